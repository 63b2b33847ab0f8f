mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const VOICES: &[(&str, &str)] = &[
    ("en-us", "Welcome to the conference bridge. Please enter your 6 digit access code, 4 8 1 5 1 6, then press pound."),
    ("en-us+f3", "You are caller number 7. The meeting starts at 9 30. Dial 0 for the operator."),
    ("en-gb", "There are 3 participants in this conference. Your PIN is 2 9 0 7. Goodbye."),
    ("de", "Willkommen in der Konferenz. Bitte geben Sie Ihre PIN ein: 3 1 4 1 5 9 2 6."),
    ("de+f2", "Sie sind der 5. Teilnehmer. Die Nummer lautet 0 8 9 1 2 3 4 5 6 7."),
    ("fr-fr", "Bienvenue dans la conférence. Veuillez composer le 1 2 3 4 5 6 7 8 9 0, puis dièse."),
    ("es", "Bienvenido a la conferencia. Marque su código 5 5 2 8 1 y pulse almohadilla."),
    ("it", "Benvenuti nella conferenza. Inserite il codice 7 3 0 9 4 seguito dal cancelletto."),
    ("ru", "Добро пожаловать в конференцию. Введите код 1 2 3 4 5 6 7 8 9 0."),
    ("cmn", "欢迎参加电话会议。请输入会议号码 3 8 6 2 1 9 0 4 5 7。"),
    ("ja", "会議へようこそ。暗証番号 1 2 3 4 5 6 7 8 9 0 を入力してください。"),
    ("pt-br", "Bem-vindo à conferência. Digite o código 9 8 7 6 5 4 3 2 1 0."),
    ("nl", "Welkom bij de conferentie. Toets uw pincode 4 4 2 1 en daarna hekje."),
    ("pl", "Witamy w konferencji. Wprowadź kod 6 0 3 1 8 2 9 i naciśnij krzyżyk."),
    ("hi", "सम्मेलन में आपका स्वागत है। कृपया अपना कोड 4 2 7 9 1 दर्ज करें।"),
    ("ar", "مرحبا بكم في المؤتمر. الرجاء إدخال الرمز 3 6 9 2 5 8 1."),
    ("tr", "Konferansa hoş geldiniz. Lütfen 8 4 6 2 0 kodunu girin ve kare tuşuna basın."),
    ("sv", "Välkommen till konferensen. Slå koden 1 9 8 4 och tryck fyrkant."),
    ("ko", "회의에 오신 것을 환영합니다. 번호 2 4 6 8 0 1 3 5 7 9 를 입력하세요."),
    ("vi", "Chào mừng bạn đến với hội nghị. Vui lòng nhập mã 5 1 3 7 9."),
    ("cs", "Vítejte v konferenci. Zadejte kód 7 7 3 1 2 a stiskněte mřížku."),
    ("fi", "Tervetuloa neuvotteluun. Näppäile koodi 6 5 4 3 2 1 ja paina risuaitaa."),
    ("el", "Καλώς ήρθατε στη διάσκεψη. Πληκτρολογήστε τον κωδικό 9 0 1 2 8."),
    ("hu", "Üdvözöljük a konferencián. Adja meg a 3 3 8 1 6 kódot, majd nyomja meg a kettőskeresztet."),
    ("en-us+m7", "Press 1 for sales, 2 for support, 3 for billing, or stay on the line. Thank you for calling."),
    ("en-gb-x-rp+f4", "The participant has left the conference. You are now the only person in this conference."),
    ("yue", "歡迎參加電話會議。請輸入密碼 8 8 6 1 2 3。"),
    ("uk", "Ласкаво просимо до конференції. Введіть код 4 0 5 9 1 2."),
];
const SPEEDS: &[u32] = &[120, 170, 230];
const PITCHES: &[u32] = &[20, 50, 85];

fn generate(dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let mut jobs = Vec::new();
    for (i, (voice, text)) in VOICES.iter().enumerate() {
        for &speed in SPEEDS {
            for &pitch in PITCHES {
                let out = dir.join(format!("v{i:02}_{speed}_{pitch}.wav"));
                jobs.push((voice.to_string(), text.to_string(), speed, pitch, out));
            }
        }
    }
    std::thread::scope(|s| {
        for part in jobs.chunks(jobs.len().div_ceil(8)) {
            s.spawn(move || {
                for (voice, text, speed, pitch, out) in part {
                    if out.exists() {
                        continue;
                    }
                    let raw = out.with_extension("raw.wav");
                    let st = Command::new("espeak-ng")
                        .args([
                            "-v",
                            voice,
                            "-s",
                            &speed.to_string(),
                            "-p",
                            &pitch.to_string(),
                        ])
                        .arg("-w")
                        .arg(&raw)
                        .arg(text)
                        .status()
                        .expect("espeak-ng");
                    assert!(st.success(), "espeak-ng {voice}");
                    let st = Command::new("sox")
                        .arg(&raw)
                        .args(["-r", "8000", "-c", "1", "-b", "16"])
                        .arg(out)
                        .status()
                        .expect("sox");
                    assert!(st.success(), "sox {voice}");
                    let _ = std::fs::remove_file(&raw);
                }
            });
        }
    });
    jobs.into_iter().map(|j| j.4).collect()
}

#[test]
fn speech_does_not_talk_off() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("talkoff");
    let mut files = generate(&dir);
    let decoded = common::signal::shared("testdata/dtmf-inband/decoded");
    files.push(decoded.join("g711a.pcm16.wav"));
    files.push(decoded.join("Numbers_1-5_3s.pcm16.wav"));
    let mut total = 0;
    let mut seconds = 0.0;
    for f in &files {
        let s = common::signal::read_wav(f);
        seconds += s.len() as f64 / 8000.0;
        let d = confgate::dtmf::inband::detect_all(&s);
        if !d.is_empty() {
            println!("talk-off in {}: {d:?}", f.display());
        }
        total += d.len();
    }
    println!(
        "talk-off: {total} false digits in {} files, {seconds:.1} s of speech",
        files.len()
    );
    assert_eq!(total, 0);
}

#[test]
fn the_daemons_own_prompts_do_not_talk_off() {
    use confgate::config::REQUIRED_PROMPTS;
    use confgate::daemon::prompts::PromptBook;
    let book = PromptBook::prepare(&common::settings(&[])).expect("prompts");
    let mut clips: Vec<(String, Vec<i16>)> = REQUIRED_PROMPTS
        .iter()
        .chain(&["join_tone", "leave_tone", "louder", "quieter"])
        // A template is spoken with its number when needed, not rendered.
        .filter(|n| **n != "participants")
        .map(|n| (n.to_string(), book.get(n).expect("prompt").to_vec()))
        .collect();
    clips.push(("early media x3".into(), book.early_media().repeat(3)));
    let mut total = 0;
    for (name, samples) in &clips {
        let d = confgate::dtmf::inband::detect_all(samples);
        if !d.is_empty() {
            println!("talk-off in prompt {name}: {d:?}");
        }
        total += d.len();
    }
    println!("prompts: {total} false digits in {} clips", clips.len());
    assert_eq!(total, 0);
}
