//! Keypad controls inside a room (sans-IO): key sequences such as `*6`
//! turned into actions.
//!
//! Every sequence starts with `*`, and each key must follow the one before
//! within [`KEY_WINDOW`]: a stray digit (or one the in-band detector heard
//! in speech) never toggles anything on its own, and a `*` left hanging is
//! forgotten. Whether a member may use a moderator's action is the room's
//! to decide: it knows who its moderators are.

use std::time::{Duration, Instant};

/// Longest gap between the keys of one sequence.
pub const KEY_WINDOW: Duration = Duration::from_secs(3);
/// Longest sequence, `*` included.
pub const MAX_KEYS: usize = 4;

/// What a member can do from the keypad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAction {
    /// Mute or unmute yourself.
    Mute,
    /// What you hear: 3 dB quieter or louder.
    ListenDown,
    ListenUp,
    /// How loud the others hear you: 3 dB down or up.
    TalkDown,
    TalkUp,
    /// Hear how many others are in the room.
    Count,
    /// Leave the room (goodbye, hang-up).
    Leave,
    /// Moderators: lock or unlock the room.
    Lock,
    /// Moderators: mute everyone but moderators, or undo it.
    MuteAll,
    /// Moderators: remove the member who joined last.
    KickLast,
}

impl KeyAction {
    pub const ALL: [KeyAction; 10] = [
        KeyAction::Mute,
        KeyAction::ListenDown,
        KeyAction::ListenUp,
        KeyAction::TalkDown,
        KeyAction::TalkUp,
        KeyAction::Count,
        KeyAction::Leave,
        KeyAction::Lock,
        KeyAction::MuteAll,
        KeyAction::KickLast,
    ];

    /// Its key in `[rooms.keys]` and its name in logs.
    pub fn name(self) -> &'static str {
        match self {
            KeyAction::Mute => "mute",
            KeyAction::ListenDown => "listen_down",
            KeyAction::ListenUp => "listen_up",
            KeyAction::TalkDown => "talk_down",
            KeyAction::TalkUp => "talk_up",
            KeyAction::Count => "count",
            KeyAction::Leave => "leave",
            KeyAction::Lock => "lock",
            KeyAction::MuteAll => "mute_all",
            KeyAction::KickLast => "kick_last",
        }
    }

    pub fn moderator_only(self) -> bool {
        matches!(
            self,
            KeyAction::Lock | KeyAction::MuteAll | KeyAction::KickLast
        )
    }

    /// The sequence it has unless configured otherwise.
    pub fn default_keys(self) -> &'static str {
        match self {
            KeyAction::Mute => "*6",
            KeyAction::ListenDown => "*4",
            KeyAction::ListenUp => "*7",
            KeyAction::TalkDown => "*1",
            KeyAction::TalkUp => "*3",
            KeyAction::Count => "*0",
            KeyAction::Leave => "*8",
            KeyAction::Lock => "*2",
            KeyAction::MuteAll => "*5",
            KeyAction::KickLast => "*9",
        }
    }
}

/// Why a set of bindings is unusable; names the action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{action}: {keys:?} must be * and 1-{} more keys from 0-9, *, #, A-D", MAX_KEYS - 1)]
    Malformed { action: &'static str, keys: String },
    #[error(
        "{action}: {keys:?} clashes with {other} ({other_keys:?}): one is the start of the other"
    )]
    Clash {
        action: &'static str,
        keys: String,
        other: &'static str,
        other_keys: String,
    },
}

/// Key sequences and their actions; an empty sequence turns an action off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBindings {
    binds: Vec<(String, KeyAction)>,
}

impl Default for KeyBindings {
    fn default() -> Self {
        KeyBindings {
            binds: KeyAction::ALL
                .iter()
                .map(|&a| (a.default_keys().to_owned(), a))
                .collect(),
        }
    }
}

fn is_key(c: char) -> bool {
    matches!(c, '0'..='9' | '*' | '#' | 'A'..='D')
}

impl KeyBindings {
    /// Bindings from `(action, keys)` pairs; actions not named keep their
    /// default sequence.
    pub fn new<'a>(
        pairs: impl IntoIterator<Item = (KeyAction, &'a str)>,
    ) -> Result<KeyBindings, KeyError> {
        let mut chosen: Vec<(KeyAction, String)> = KeyAction::ALL
            .iter()
            .map(|&a| (a, a.default_keys().to_owned()))
            .collect();
        for (action, keys) in pairs {
            let keys = keys.trim().to_ascii_uppercase();
            if let Some(slot) = chosen.iter_mut().find(|(a, _)| *a == action) {
                slot.1 = keys;
            }
        }
        let mut binds: Vec<(String, KeyAction)> = Vec::new();
        for (action, keys) in chosen {
            if keys.is_empty() {
                continue;
            }
            let n = keys.chars().count();
            if !keys.starts_with('*') || !(2..=MAX_KEYS).contains(&n) || !keys.chars().all(is_key) {
                return Err(KeyError::Malformed {
                    action: action.name(),
                    keys,
                });
            }
            if let Some((other_keys, other)) = binds
                .iter()
                .find(|(k, _)| k.starts_with(&keys) || keys.starts_with(k.as_str()))
            {
                return Err(KeyError::Clash {
                    action: action.name(),
                    keys,
                    other: other.name(),
                    other_keys: other_keys.clone(),
                });
            }
            binds.push((keys, action));
        }
        Ok(KeyBindings { binds })
    }

    /// The sequence bound to `action`, if any.
    pub fn keys(&self, action: KeyAction) -> Option<&str> {
        self.binds
            .iter()
            .find(|(_, a)| *a == action)
            .map(|(k, _)| k.as_str())
    }
}

/// One member's keypad.
#[derive(Debug, Clone, Default)]
pub struct Keypad {
    typed: String,
    last: Option<Instant>,
}

impl Keypad {
    pub fn new() -> Keypad {
        Keypad::default()
    }

    /// A key pressed at `now`.
    pub fn press(&mut self, bindings: &KeyBindings, key: char, now: Instant) -> Option<KeyAction> {
        let stale = self
            .last
            .is_none_or(|t| now.saturating_duration_since(t) > KEY_WINDOW);
        if stale {
            self.typed.clear();
        }
        self.last = Some(now);
        if self.typed.is_empty() && key != '*' {
            return None;
        }
        self.typed.push(key);
        if let Some(&(_, action)) = bindings.binds.iter().find(|(k, _)| *k == self.typed) {
            self.typed.clear();
            return Some(action);
        }
        if !bindings
            .binds
            .iter()
            .any(|(k, _)| k.starts_with(&self.typed))
        {
            // No sequence goes on like this; a `*` may start the next one.
            self.typed.clear();
            if key == '*' {
                self.typed.push('*');
            }
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests pick the start of their virtual clock
mod tests {
    use super::*;

    fn keyed(
        pad: &mut Keypad,
        b: &KeyBindings,
        keys: &str,
        t0: Instant,
        gap: Duration,
    ) -> Vec<KeyAction> {
        keys.chars()
            .enumerate()
            .filter_map(|(i, k)| pad.press(b, k, t0 + gap * i as u32))
            .collect()
    }

    #[test]
    fn star_and_digit_make_an_action() {
        let b = KeyBindings::default();
        let mut pad = Keypad::new();
        let t0 = Instant::now();
        let ms = Duration::from_millis(300);
        assert_eq!(keyed(&mut pad, &b, "*6", t0, ms), [(KeyAction::Mute)]);
        assert_eq!(
            keyed(&mut pad, &b, "*0*8", t0 + ms * 4, ms),
            [(KeyAction::Count), (KeyAction::Leave)]
        );
    }

    #[test]
    fn a_digit_alone_or_late_does_nothing() {
        let b = KeyBindings::default();
        let mut pad = Keypad::new();
        let t0 = Instant::now();
        assert!(keyed(&mut pad, &b, "6666", t0, Duration::from_millis(200)).is_empty());
        // The 6 comes 3.5 s after the star.
        assert!(keyed(
            &mut pad,
            &b,
            "*6",
            t0 + Duration::from_secs(5),
            Duration::from_millis(3500)
        )
        .is_empty());
        // ...but a fresh star then works.
        let t1 = t0 + Duration::from_secs(20);
        assert_eq!(
            keyed(&mut pad, &b, "*6", t1, Duration::from_secs(2)),
            [(KeyAction::Mute)]
        );
    }

    #[test]
    fn a_second_star_restarts_the_sequence() {
        let b = KeyBindings::default();
        let mut pad = Keypad::new();
        let t0 = Instant::now();
        assert_eq!(
            keyed(&mut pad, &b, "**6", t0, Duration::from_millis(100)),
            [(KeyAction::Mute)]
        );
        // `*#` is bound to nothing: forgotten, and `6` alone does nothing.
        assert!(keyed(
            &mut pad,
            &b,
            "*#6",
            t0 + Duration::from_secs(1),
            Duration::from_millis(100)
        )
        .is_empty());
    }

    #[test]
    fn bindings_are_checked() {
        let b = KeyBindings::new([(KeyAction::Mute, "*66"), (KeyAction::Leave, "")]).unwrap();
        assert_eq!(b.keys(KeyAction::Mute), Some("*66"));
        assert_eq!(b.keys(KeyAction::Leave), None);
        let mut pad = Keypad::new();
        let t0 = Instant::now();
        let ms = Duration::from_millis(100);
        assert_eq!(keyed(&mut pad, &b, "*66", t0, ms), [(KeyAction::Mute)]);
        assert!(keyed(&mut pad, &b, "*8", t0 + ms * 5, ms).is_empty());

        for bad in ["6", "*", "**x", "*12345", "#6"] {
            let e = KeyBindings::new([(KeyAction::Mute, bad)]).unwrap_err();
            assert!(
                matches!(e, KeyError::Malformed { action: "mute", .. }),
                "{bad}: {e}"
            );
        }
        let e = KeyBindings::new([(KeyAction::Mute, "*0")]).unwrap_err();
        assert!(e.to_string().contains("clashes"), "{e}");
        let e = KeyBindings::new([(KeyAction::Mute, "*01")]).unwrap_err();
        assert!(e.to_string().contains("count"), "{e}");
    }
}
