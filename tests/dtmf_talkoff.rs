mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

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
/// Languages every espeak-ng voice variant speaks, each its text in `VOICES`.
const LANGS: &[&str] = &["en-us", "de", "fr-fr", "es", "cmn", "ja", "ru", "hi"];
const SPEEDS: &[u32] = &[120, 170, 230];
/// espeak-ng pitch, 0-99; the high ones lift female variants' harmonics into
/// the DTMF groups.
const PITCHES: &[u32] = &[20, 50, 85, 99];
/// Mixes of two or three voices, as a conference bridge sums its speakers.
const MIXES: usize = 400;
/// Mixes of two or three clips of speech or music: someone talking over
/// music on hold, two instruments.
const MUSIC_MIXES: usize = 200;

/// One clip of the corpus, made by external programs and cached by its recipe.
#[derive(Debug, Clone)]
enum Recipe {
    /// espeak-ng, resampled to 8 kHz by sox; `normalise` peaks it at -3 dBFS.
    Speech {
        voice: String,
        text: String,
        speed: u32,
        pitch: u32,
        normalise: bool,
    },
    /// `sox -n -r 8000 -c 1 -b 16 OUT <args>`.
    Music { name: &'static str, args: String },
}

impl Recipe {
    fn label(&self) -> String {
        match self {
            Recipe::Speech {
                voice,
                speed,
                pitch,
                ..
            } => format!("speech {voice} -s {speed} -p {pitch}"),
            Recipe::Music { name, .. } => format!("music {name}"),
        }
    }

    /// A file name that changes whenever the recipe does (FNV-1a of it).
    fn file_name(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in format!("{self:?}").bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}.wav")
    }

    fn make(&self, out: &Path) {
        let part = out.with_extension("part.wav");
        match self {
            Recipe::Speech {
                voice,
                text,
                speed,
                pitch,
                normalise,
            } => {
                let mut espeak = Command::new("espeak-ng")
                    .args([
                        "-v",
                        voice,
                        "-s",
                        &speed.to_string(),
                        "-p",
                        &pitch.to_string(),
                    ])
                    .arg("--stdout")
                    .arg(text)
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("espeak-ng");
                let mut sox = Command::new("sox");
                sox.args(["-q", "-R", "-t", "wav", "-"])
                    .args(["-r", "8000", "-c", "1", "-b", "16"])
                    .arg(&part)
                    .stdin(espeak.stdout.take().unwrap());
                if *normalise {
                    sox.args(["gain", "-n", "-3"]);
                }
                let st = sox.status().expect("sox");
                assert!(espeak.wait().unwrap().success(), "espeak-ng {voice}");
                assert!(st.success(), "sox {voice}");
            }
            Recipe::Music { name, args } => {
                let st = Command::new("sox")
                    .args(["-q", "-R", "-n", "-r", "8000", "-c", "1", "-b", "16"])
                    .arg(&part)
                    .args(args.split_whitespace())
                    .status()
                    .expect("sox");
                assert!(st.success(), "sox {name}: {args}");
            }
        }
        std::fs::rename(&part, out).unwrap();
    }
}

/// Every voice variant this espeak-ng has (`+f1`, `+klatt`, `+whisper`, ...).
fn variants() -> Vec<String> {
    let out = Command::new("espeak-ng")
        .arg("--voices=variant")
        .output()
        .expect("espeak-ng");
    assert!(out.status.success());
    let v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| {
            l.split_whitespace()
                .nth(4)?
                .strip_prefix("!v/")
                .map(String::from)
        })
        .collect();
    assert!(v.len() >= 20, "espeak-ng lists only {} variants", v.len());
    v
}

fn text_of(lang: &str) -> &'static str {
    VOICES.iter().find(|v| v.0 == lang).expect("a text").1
}

/// Chords, arpeggios, sweeps and melodies of harmonic-rich waveforms.
fn music() -> Vec<Recipe> {
    let mut m: Vec<(&'static str, String)> = Vec::new();
    let waves = [
        "pluck",
        "square",
        "sawtooth",
        "triangle",
        "trapezium",
        "sine",
    ];
    // A melody: each note its own chain, concatenated by sox.
    let tunes: [(&str, &[i32]); 4] = [
        (
            "scale",
            &[0, 2, 4, 5, 7, 9, 11, 12, 14, 16, 17, 19, 21, 23, 24],
        ),
        ("ode", &[4, 4, 5, 7, 7, 5, 4, 2, 0, 0, 2, 4, 4, 2, 2]),
        (
            "leaps",
            &[0, 12, 7, 19, 5, 17, 9, 21, 2, 14, 11, 23, 4, 16, 24],
        ),
        (
            "chromatic",
            &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14],
        ),
    ];
    for (w, wave) in waves.iter().enumerate() {
        for (t, (tune, notes)) in tunes.iter().enumerate() {
            // Roots from A3 to A5 (semitones from A4), so that fundamentals,
            // and harmonics, cover both DTMF groups.
            for root in [-12, -5, 0, 7, 12] {
                let dur = [0.12, 0.2, 0.3, 0.45][(w + t) % 4];
                let args: Vec<String> = notes
                    .iter()
                    .map(|n| format!("synth {dur} {wave} %{} vol 0.5", root + n))
                    .collect();
                m.push((tune, args.join(" : ")));
            }
        }
        // Chords: triads and sevenths, held, with the notes' harmonics.
        for (c, chord) in [[0, 4, 7, 12], [0, 3, 7, 10], [0, 4, 7, 11], [0, 5, 9, 14]]
            .iter()
            .enumerate()
        {
            for root in [-9, -2, 3, 8, 10] {
                let notes: Vec<String> = chord
                    .iter()
                    .map(|n| format!("{wave} %{}", root + n))
                    .collect();
                m.push((
                    "chord",
                    format!("synth 1.5 {} remix - norm -3", notes.join(" ")),
                ));
                // The same chord broken into an arpeggio of overlapping notes.
                if c % 2 == 0 {
                    m.push((
                        "arpeggio",
                        format!(
                            "synth 2.5 {} delay 0 0.3 0.6 0.9 remix - norm -3",
                            notes.join(" ")
                        ),
                    ));
                }
            }
        }
        // Sweeps, linear and exponential, whose harmonics cross the groups
        // (a plucked string cannot glide).
        if *wave == "pluck" {
            continue;
        }
        for (lo, hi) in [(100, 1000), (200, 2000), (600, 1700), (300, 3400)] {
            m.push(("sweep", format!("synth 3 {wave} {lo}-{hi} vol 0.5")));
            m.push(("sweep", format!("synth 3 {wave} {hi}/{lo} vol 0.5")));
        }
    }
    // Two instruments at once, one playing a fixed interval above the other,
    // with vibrato, tremolo, echo and a phone band.
    for (i, iv) in [5, 7, 9, 10, 12, 15, 16, 19].iter().enumerate() {
        for root in [-7, -2, 0, 5] {
            let (a, b) = (waves[i % 6], waves[(i + 3) % 6]);
            m.push((
                "duet",
                format!(
                    "synth 2 {a} %{root} {b} %{} remix - tremolo 5 30 echo 0.8 0.7 60 0.4 sinc 300-3400 norm -3",
                    root + iv
                ),
            ));
        }
    }
    m.into_iter()
        .map(|(name, args)| Recipe::Music { name, args })
        .collect()
}

fn recipes() -> Vec<Recipe> {
    let mut r = Vec::new();
    for (voice, text) in VOICES {
        for &speed in SPEEDS {
            for &pitch in PITCHES {
                r.push(Recipe::Speech {
                    voice: voice.to_string(),
                    text: text.to_string(),
                    speed,
                    pitch,
                    normalise: false,
                });
            }
        }
    }
    for (v, variant) in variants().iter().enumerate() {
        for (l, lang) in LANGS.iter().enumerate() {
            for (p, &pitch) in PITCHES.iter().enumerate() {
                r.push(Recipe::Speech {
                    voice: format!("{lang}+{variant}"),
                    text: text_of(lang).to_string(),
                    speed: SPEEDS[(v + l + p) % SPEEDS.len()],
                    pitch,
                    normalise: true,
                });
            }
        }
    }
    r.extend(music());
    r
}

/// Makes the clips not yet cached, on a few threads.
fn generate(dir: &Path, recipes: &[Recipe]) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let files: Vec<PathBuf> = recipes.iter().map(|r| dir.join(r.file_name())).collect();
    // Which clip is which, for whoever listens to one.
    let index: String = recipes
        .iter()
        .map(|r| format!("{} {r:?}\n", r.file_name()))
        .collect();
    std::fs::write(dir.join("index.txt"), index).unwrap();
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(r) = recipes.get(i) else { break };
                if !files[i].exists() {
                    r.make(&files[i]);
                }
            });
        }
    });
    files
}

/// A small deterministic generator for picking mixes.
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// Two or three different clips over each other, the first from `first`
/// and the others from `pool` (no voice twice), summed with gain and
/// clipped, as a bridge's mix of loud speakers would be; labelled `kind`.
fn mixes(
    kind: &str,
    first: &[(String, Vec<i16>)],
    pool: &[(String, Vec<i16>)],
    n: usize,
    seed: u64,
) -> Vec<(String, Vec<i16>)> {
    let mut rng = Lcg(seed);
    // A voice is its espeak-ng name; any other clip is itself.
    let who = |c: &(String, Vec<i16>)| match c.0.strip_prefix("speech ") {
        Some(rest) => rest.split(' ').next().unwrap_or("").to_string(),
        None => c.0.clone(),
    };
    (0..n)
        .map(|i| {
            let mut picked = vec![&first[rng.below(first.len())]];
            while picked.len() < 2 + i % 2 {
                let c = &pool[rng.below(pool.len())];
                if picked.iter().all(|&k| who(k) != who(c)) {
                    picked.push(c);
                }
            }
            let gain = [1.0, 1.6, 2.5][i % 3];
            let mut sum: Vec<f32> = Vec::new();
            let mut names = Vec::new();
            for (j, (name, clip)) in picked.into_iter().enumerate() {
                let offset = j * (1000 + rng.below(4000));
                if sum.len() < offset + clip.len() {
                    sum.resize(offset + clip.len(), 0.0);
                }
                for (d, &s) in sum[offset..].iter_mut().zip(clip) {
                    *d += f32::from(s) * gain;
                }
                names.push(name.as_str());
            }
            let mix = sum
                .iter()
                .map(|&v| v.clamp(-32768.0, 32767.0) as i16)
                .collect();
            (format!("{kind} x{gain} [{}]", names.join(" | ")), mix)
        })
        .collect()
}

#[test]
#[allow(clippy::disallowed_methods)] // the test reports how long it took
fn speech_and_music_do_not_talk_off() {
    let started = std::time::Instant::now();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("talkoff");
    let recipes = recipes();
    let files = generate(&dir, &recipes);
    let generated = started.elapsed();
    let mut clips: Vec<(String, Vec<i16>)> = recipes
        .iter()
        .zip(&files)
        .map(|(r, f)| (r.label(), common::signal::read_wav(f)))
        .collect();
    let (speech, music): (Vec<_>, Vec<_>) = clips
        .iter()
        .cloned()
        .partition(|c| c.0.starts_with("speech"));
    let mut mixed = mixes("mix", &speech, &speech, MIXES, 0x5eed);
    mixed.extend(mixes("mix+music", &music, &clips, MUSIC_MIXES, 0x3a51c));
    clips.extend(mixed);
    let decoded = common::signal::shared("testdata/dtmf-inband/decoded");
    for f in ["g711a.pcm16.wav", "Numbers_1-5_3s.pcm16.wav"] {
        clips.push((
            format!("recording {f}"),
            common::signal::read_wav(&decoded.join(f)),
        ));
    }
    // kind -> (clips, seconds, false digits)
    let mut table: BTreeMap<&str, (usize, f64, usize)> = BTreeMap::new();
    let mut total = 0;
    for (label, samples) in &clips {
        let d = confgate::dtmf::inband::detect_all(samples);
        if !d.is_empty() {
            println!("talk-off in {label}: {d:?}");
        }
        let e = table.entry(label.split(' ').next().unwrap()).or_default();
        e.0 += 1;
        e.1 += samples.len() as f64 / 8000.0;
        e.2 += d.len();
        total += d.len();
    }
    for (kind, (n, secs, bad)) in &table {
        println!("talk-off {kind:<10} {n:>5} clips {secs:>9.1} s {bad:>4} false digits");
    }
    let secs: f64 = table.values().map(|e| e.1).sum();
    println!(
        "talk-off: {total} false digits in {} clips, {secs:.1} s ({} voices, {} variants x {} languages); generated in {:.1} s, all in {:.1} s",
        clips.len(),
        VOICES.len(),
        variants().len(),
        LANGS.len(),
        generated.as_secs_f64(),
        started.elapsed().as_secs_f64()
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
