//! Room recording: a room's mix written to a 16-bit mono WAV file.
//!
//! The mixer's media thread runs a 20 ms tick and must never wait on a disk,
//! so a [`Recorder`] does no file I/O after [`Recorder::start`]. Each tick the
//! media thread hands it the room's mix with [`Recorder::push`], which copies
//! the frame by value into a bounded queue (`sync_channel`, [`QUEUE_FRAMES`]
//! frames, about five seconds) with `try_send`: no blocking and no allocation
//! per frame. A thread of its own takes the frames off the queue and writes
//! them with `hound`.
//!
//! Every [`FLUSH_SECONDS`] seconds of audio the writer flushes the WAV: hound's
//! `WavWriter::flush` rewrites the RIFF and data chunk lengths in the header
//! and flushes the file, so if the daemon dies mid-recording the file still
//! reads as a valid WAV up to the last flush.
//!
//! Ending: [`Recorder::stop`], or dropping the recorder, closes the queue; the
//! writer writes what is still queued, finalizes the header and calls the
//! `done` callback with `Ok`. Failing: a write error ends the writer at once
//! (`RecordingError::Write`); a full queue means the disk cannot keep up, so
//! `push` marks the recording overflowed and returns an error, and the writer
//! stops at the next frame it takes, with `RecordingError::QueueFull`. Either
//! way the writer closes the queue, so every later `push` fails, and `done`
//! is called exactly once, on the writer thread, with the reason and what was
//! written so far. The caller only has to drop the recorder when `push`
//! fails.

use std::fs::File;
use std::io::{self, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::codec::ROOM_FRAME as FRAME;

/// Frames the queue holds: five seconds of 20 ms frames.
pub const QUEUE_FRAMES: usize = 250;

/// Seconds of audio between two header flushes.
pub const FLUSH_SECONDS: u32 = 2;

/// What a recording produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    pub path: PathBuf,
    /// Audio written to the file.
    pub duration: Duration,
}

/// Why a recording could not start or did not end well.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("cannot create {}: {source}", path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot start the writer thread: {0}")]
    Spawn(io::Error),
    #[error("disk write failed: {0}")]
    Write(String),
    #[error("the disk is too slow (queue full)")]
    QueueFull,
}

/// [`Recorder::push`] refused a frame: the recording has ended, and its reason
/// goes to the `done` callback. Drop the recorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the recording has ended")]
pub struct RecordingEnded;

/// How a recording ended, as handed to the `done` callback.
pub type Outcome = Result<Recording, (Recording, RecordingError)>;

/// One room's recording, held by the media thread.
///
/// Dropping it without [`Recorder::stop`] ends the recording the same way.
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    tx: SyncSender<[i16; FRAME]>,
    /// Set by `push` when the queue was full; the writer then ends with
    /// [`RecordingError::QueueFull`].
    overflowed: Arc<AtomicBool>,
    ended: bool,
}

impl Recorder {
    /// Create the file at `path` now (an error, such as a missing directory or
    /// no permission, is returned at once) and start the writer thread for
    /// `rate` Hz mono audio. `done` is called exactly once on the writer thread
    /// when the recording ends; it is not called if `start` fails.
    pub fn start(
        path: PathBuf,
        rate: u32,
        done: impl FnOnce(Outcome) + Send + 'static,
    ) -> Result<Recorder, RecordingError> {
        let file = match File::create(&path) {
            Ok(file) => file,
            Err(source) => return Err(RecordingError::Create { path, source }),
        };
        Self::start_with_sink(path, BufWriter::new(file), rate, done)
    }

    /// [`Recorder::start`] over any sink (tests inject failing and slow ones).
    fn start_with_sink<W>(
        path: PathBuf,
        sink: W,
        rate: u32,
        done: impl FnOnce(Outcome) + Send + 'static,
    ) -> Result<Recorder, RecordingError>
    where
        W: Write + Seek + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(QUEUE_FRAMES);
        let overflowed = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            path: path.clone(),
            rx,
            overflowed: Arc::clone(&overflowed),
        };
        std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || done(writer.run(sink, rate)))
            .map_err(RecordingError::Spawn)?;
        Ok(Recorder {
            path,
            tx,
            overflowed,
            ended: false,
        })
    }

    /// Queue one frame of the mix; never blocks. An error means the recording
    /// has ended (the writer failed, or the queue was full and the writer will
    /// report [`RecordingError::QueueFull`]): drop the recorder.
    pub fn push(&mut self, frame: &[i16; FRAME]) -> Result<(), RecordingEnded> {
        if self.ended {
            return Err(RecordingEnded);
        }
        match self.tx.try_send(*frame) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.overflowed.store(true, Ordering::Release);
                self.ended = true;
                Err(RecordingEnded)
            }
            Err(TrySendError::Disconnected(_)) => {
                self.ended = true;
                Err(RecordingEnded)
            }
        }
    }

    /// End the recording without waiting: the writer writes what is queued,
    /// finalizes the file and reports `Ok` to `done`.
    pub fn stop(self) {
        // Dropping the sender closes the queue; that is the writer's signal.
        drop(self);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The writer thread's side of a recording.
struct Writer {
    path: PathBuf,
    rx: Receiver<[i16; FRAME]>,
    overflowed: Arc<AtomicBool>,
}

impl Writer {
    fn run<W: Write + Seek>(self, sink: W, rate: u32) -> Outcome {
        let Writer {
            path,
            rx,
            overflowed,
        } = self;
        let mut wav = match WavSink::new(sink, rate) {
            Ok(wav) => wav,
            Err(e) => {
                drop(rx);
                return Err((recording(path, 0, rate), e));
            }
        };
        // Frames until the sender is dropped (stop, or a failed push).
        while let Ok(frame) = rx.recv() {
            if overflowed.load(Ordering::Acquire) {
                break;
            }
            if let Err(e) = wav.write(&frame) {
                drop(rx);
                let so_far = recording(path, wav.samples, rate);
                // Dropping the hound writer still tries to fix the header.
                drop(wav);
                return Err((so_far, e));
            }
        }
        drop(rx);
        let samples = wav.samples;
        let finished = wav.finish();
        let rec = recording(path, samples, rate);
        if overflowed.load(Ordering::Acquire) {
            return Err((rec, RecordingError::QueueFull));
        }
        match finished {
            Ok(()) => Ok(rec),
            Err(e) => Err((rec, e)),
        }
    }
}

fn recording(path: PathBuf, samples: u64, rate: u32) -> Recording {
    let rate = u64::from(rate.max(1));
    let duration = Duration::from_secs(samples / rate)
        + Duration::from_nanos((samples % rate) * 1_000_000_000 / rate);
    Recording { path, duration }
}

/// A WAV being written, flushed every [`FLUSH_SECONDS`] of audio.
struct WavSink<W: Write + Seek> {
    wav: hound::WavWriter<W>,
    /// Samples written successfully.
    samples: u64,
    flushed: u64,
    flush_every: u64,
}

impl<W: Write + Seek> WavSink<W> {
    fn new(sink: W, rate: u32) -> Result<Self, RecordingError> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let wav = hound::WavWriter::new(sink, spec).map_err(write_error)?;
        Ok(WavSink {
            wav,
            samples: 0,
            flushed: 0,
            flush_every: (u64::from(rate) * u64::from(FLUSH_SECONDS)).max(FRAME as u64),
        })
    }

    fn write(&mut self, frame: &[i16; FRAME]) -> Result<(), RecordingError> {
        let mut out = self.wav.get_i16_writer(FRAME as u32);
        for &sample in frame {
            out.write_sample(sample);
        }
        out.flush().map_err(write_error)?;
        self.samples += FRAME as u64;
        if self.samples - self.flushed >= self.flush_every {
            // Rewrites the header lengths: the file is valid up to here.
            self.wav.flush().map_err(write_error)?;
            self.flushed = self.samples;
        }
        Ok(())
    }

    fn finish(self) -> Result<(), RecordingError> {
        self.wav.finalize().map_err(write_error)
    }
}

fn write_error(e: hound::Error) -> RecordingError {
    match e {
        hound::Error::IoError(e) => RecordingError::Write(e.to_string()),
        other => RecordingError::Write(other.to_string()),
    }
}

/// Longest room name kept in a file name.
const MAX_ROOM_CHARS: usize = 64;

/// The file name for a recording of `room` started at `started`, such as
/// `ROOM-20261203T104501Z.wav` (UTC). The room name keeps only
/// `[A-Za-z0-9_-]` (anything else becomes `_`), so it cannot leave the
/// directory it is joined to.
pub fn file_name(room: &str, started: SystemTime) -> String {
    let mut name: String = room
        .chars()
        .take(MAX_ROOM_CHARS)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        name.push_str("room");
    }
    let secs = started
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (year, month, day) = civil_date(secs / 86_400);
    let of_day = secs % 86_400;
    format!(
        "{name}-{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z.wav",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01.
fn civil_date(days: u64) -> (u64, u32, u32) {
    // Count from 0000-03-01, so a leap day ends its year, in 400-year eras
    // of 146 097 days.
    let days = days + 719_468;
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    // Years of 365 days, less a day at every 4th, 100th and 400th year.
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months counted from March: every five months take 153 days.
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = (month_from_march as u32 + 2) % 12 + 1;
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::sync::{Condvar, Mutex};

    /// A generous bound: the box running the tests may be busy.
    const WAIT: Duration = Duration::from_secs(30);

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("confgate-recorder-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    /// A `done` callback that hands the outcome to the test.
    fn outcome() -> (impl FnOnce(Outcome) + Send + 'static, Receiver<Outcome>) {
        let (tx, rx) = mpsc::channel();
        (
            move |o| {
                tx.send(o).unwrap();
            },
            rx,
        )
    }

    /// `seconds` of a 1 kHz tone at 8 kHz, in frames.
    fn tone(seconds: usize) -> Vec<[i16; FRAME]> {
        let mut n = 0usize;
        (0..seconds * 50)
            .map(|_| {
                let mut frame = [0i16; FRAME];
                for s in &mut frame {
                    let phase = 2.0 * std::f64::consts::PI * 1000.0 * n as f64 / 16000.0;
                    *s = (phase.sin() * 12_000.0) as i16;
                    n += 1;
                }
                frame
            })
            .collect()
    }

    fn read_samples(path: &Path) -> (hound::WavSpec, Vec<i16>) {
        let mut reader = hound::WavReader::open(path).unwrap();
        let samples = reader.samples::<i16>().map(|s| s.unwrap()).collect();
        (reader.spec(), samples)
    }

    #[test]
    fn records_a_tone_and_reads_back() {
        let path = temp_path("tone.wav");
        let (done, rx) = outcome();
        let mut rec = Recorder::start(path.clone(), 16000, done).unwrap();
        assert_eq!(rec.path(), path);
        let frames = tone(3);
        for f in &frames {
            rec.push(f).unwrap();
        }
        rec.stop();
        let got = rx.recv_timeout(WAIT).unwrap().unwrap();
        assert_eq!(
            got,
            Recording {
                path: path.clone(),
                duration: Duration::from_secs(3)
            }
        );
        let (spec, samples) = read_samples(&path);
        assert_eq!(spec.sample_rate, 16000);
        assert_eq!(spec.channels, 1);
        assert_eq!(spec.bits_per_sample, 16);
        assert_eq!(spec.sample_format, hound::SampleFormat::Int);
        assert_eq!(samples, frames.concat());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn dropping_the_recorder_finalizes_the_file() {
        let path = temp_path("dropped.wav");
        let (done, rx) = outcome();
        let mut rec = Recorder::start(path.clone(), 16000, done).unwrap();
        let frames = tone(1);
        for f in &frames {
            rec.push(f).unwrap();
        }
        drop(rec);
        let got = rx.recv_timeout(WAIT).unwrap().unwrap();
        assert_eq!(got.duration, Duration::from_secs(1));
        assert_eq!(read_samples(&path).1, frames.concat());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_killed_writer_leaves_a_file_readable_to_the_last_flush() {
        let path = temp_path("killed.wav");
        let file = BufWriter::new(File::create(&path).unwrap());
        let mut wav = WavSink::new(file, 16000).unwrap();
        // 2.5 s: the header was flushed at 2 s, the rest is not.
        let frames = tone(3);
        for f in &frames[..125] {
            wav.write(f).unwrap();
        }
        assert_eq!(wav.flushed, 32_000);
        // As if the process died: no finalize, no destructors, no buffer flush.
        std::mem::forget(wav);
        let (spec, samples) = read_samples(&path);
        assert_eq!(spec.sample_rate, 16000);
        assert!(samples.len() >= 32_000, "{} samples", samples.len());
        assert_eq!(&samples[..], &frames.concat()[..samples.len()]);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_missing_directory_fails_at_start() {
        let path = temp_path("no-such-dir").join("room.wav");
        let (done, _rx) = outcome();
        let err = Recorder::start(path.clone(), 16000, done).unwrap_err();
        match &err {
            RecordingError::Create { path: p, source } => {
                assert_eq!(p, &path);
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
    }

    #[test]
    fn a_full_disk_is_reported_with_its_reason() {
        // Writes to /dev/full fail with ENOSPC; seeking it succeeds.
        let path = PathBuf::from("/dev/full");
        let (done, rx) = outcome();
        let mut rec = Recorder::start(path.clone(), 16000, done).unwrap();
        // More than the file buffer holds, less than the queue: the writer
        // fails on its own without the queue filling.
        for f in &tone(1)[..40] {
            if rec.push(f).is_err() {
                break;
            }
        }
        let (so_far, err) = rx.recv_timeout(WAIT).unwrap().unwrap_err();
        assert_eq!(so_far.path, path);
        assert!(so_far.duration < Duration::from_secs(1));
        assert!(matches!(err, RecordingError::Write(_)), "{err:?}");
        let reason = io::Error::from_raw_os_error(libc::ENOSPC).to_string();
        assert_eq!(err.to_string(), format!("disk write failed: {reason}"));
        // The writer closed the queue before reporting.
        assert_eq!(rec.push(&[0; FRAME]), Err(RecordingEnded));
    }

    /// A sink that fails every write after the first `ok` bytes.
    struct FailingSink {
        inner: Cursor<Vec<u8>>,
        ok: usize,
    }

    impl Write for FailingSink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.inner.get_ref().len() + buf.len() > self.ok {
                return Err(io::Error::other("the disk went away"));
            }
            self.inner.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Seek for FailingSink {
        fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
            self.inner.seek(pos)
        }
    }

    #[test]
    fn a_failing_sink_reports_what_was_written() {
        let path = PathBuf::from("failing.wav");
        let (done, rx) = outcome();
        // The 44-byte header and ten frames fit.
        let sink = FailingSink {
            inner: Cursor::new(Vec::new()),
            ok: 44 + 10 * FRAME * 2,
        };
        let mut rec = Recorder::start_with_sink(path.clone(), sink, 16000, done).unwrap();
        for f in &tone(1)[..20] {
            if rec.push(f).is_err() {
                break;
            }
        }
        let (so_far, err) = rx.recv_timeout(WAIT).unwrap().unwrap_err();
        assert_eq!(so_far.path, path);
        assert_eq!(so_far.duration, Duration::from_millis(200));
        assert_eq!(err.to_string(), "disk write failed: the disk went away");
        assert_eq!(rec.push(&[0; FRAME]), Err(RecordingEnded));
    }

    /// A sink whose writes wait until the test opens the gate.
    struct GatedSink {
        inner: Cursor<Vec<u8>>,
        gate: Arc<(Mutex<bool>, Condvar)>,
    }

    impl Write for GatedSink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (open, cv) = &*self.gate;
            let mut open = open.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            self.inner.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Seek for GatedSink {
        fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
            self.inner.seek(pos)
        }
    }

    #[test]
    fn a_slow_disk_fills_the_queue_and_is_reported_once() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let sink = GatedSink {
            inner: Cursor::new(Vec::new()),
            gate: Arc::clone(&gate),
        };
        let (done, rx) = outcome();
        let path = PathBuf::from("slow.wav");
        let mut rec = Recorder::start_with_sink(path.clone(), sink, 16000, done).unwrap();
        // The writer is stuck on the header before taking any frame.
        for _ in 0..QUEUE_FRAMES {
            rec.push(&[1; FRAME]).unwrap();
        }
        assert_eq!(rec.push(&[1; FRAME]), Err(RecordingEnded));
        assert_eq!(rec.push(&[1; FRAME]), Err(RecordingEnded));
        drop(rec);
        assert!(rx.try_recv().is_err(), "reported before the disk moved");
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        let (so_far, err) = rx.recv_timeout(WAIT).unwrap().unwrap_err();
        assert_eq!(so_far.path, path);
        assert_eq!(so_far.duration, Duration::ZERO);
        assert!(matches!(err, RecordingError::QueueFull), "{err:?}");
        assert_eq!(err.to_string(), "the disk is too slow (queue full)");
        // Exactly once: the callback's sender is gone with the writer thread.
        assert!(rx.recv_timeout(WAIT).is_err());
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn file_names_are_utc_stamped() {
        assert_eq!(
            file_name("ROOM", at(1_796_294_701)),
            "ROOM-20261203T104501Z.wav"
        );
        assert_eq!(file_name("r", at(0)), "r-19700101T000000Z.wav");
        assert_eq!(file_name("r", at(951_868_799)), "r-20000229T235959Z.wav");
        assert_eq!(file_name("r", at(4_107_542_400)), "r-21000301T000000Z.wav");
        assert_eq!(
            file_name("r", UNIX_EPOCH - Duration::from_secs(5)),
            "r-19700101T000000Z.wav"
        );
    }

    #[test]
    fn civil_dates_match_a_day_by_day_count() {
        let mut date = (1970u64, 1u32, 1u32);
        for days in 0..200_000 {
            assert_eq!(civil_date(days), date, "day {days}");
            let (y, m, d) = date;
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let month_days = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            date = if d < month_days {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
        }
    }

    #[test]
    fn room_names_cannot_leave_the_directory() {
        let t = at(1_796_294_701);
        assert_eq!(
            file_name("../../etc/passwd", t),
            "______etc_passwd-20261203T104501Z.wav"
        );
        assert_eq!(
            file_name("a b/c\\d\0é", t),
            "a_b_c_d__-20261203T104501Z.wav"
        );
        assert_eq!(
            file_name("Sales_Q4-2026", t),
            "Sales_Q4-2026-20261203T104501Z.wav"
        );
        assert_eq!(file_name("", t), "room-20261203T104501Z.wav");
        let long = file_name(&"x".repeat(1000), t);
        assert_eq!(long.len(), MAX_ROOM_CHARS + "-20261203T104501Z.wav".len());
        for name in [file_name("../x", t), file_name("/", t), file_name(".", t)] {
            assert!(!name.contains('/') && !name.starts_with('.'), "{name}");
        }
    }
}
