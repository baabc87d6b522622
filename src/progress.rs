//! Progress of the long tools (`verify`, `rekey`, `migrate`, `rotate-key`): a bar with rate
//! and ETA on a terminal (indicatif), plain lines on stderr otherwise, so a log file or a
//! cron mail says how far a run got.
//!
//! Invariants: without a terminal a line is printed when the work crosses each tenth of its
//! total (and at the end), never on a timer, so the output of a run depends only on its work.
//! Findings printed through `println` are never torn by a redraw of the bar.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{HumanBytes, HumanDuration, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Work over objects whose sizes are known up front; the bar counts bytes.
pub struct Progress {
    bar: ProgressBar,
    verb: &'static str,
    objects: u64,
    done_objects: u64,
    /// Tenths of the total already reported as a line (no terminal).
    reported: u64,
    lines: bool,
}

impl Progress {
    /// `verb` names the work in lines (`verified`, `rekeyed`, ...).
    pub fn new(verb: &'static str, objects: u64, bytes: u64) -> Self {
        Self::with_target(verb, objects, bytes, std::io::stderr().is_terminal())
    }

    fn with_target(verb: &'static str, objects: u64, bytes: u64, tty: bool) -> Self {
        let bar = ProgressBar::with_draw_target(
            Some(bytes),
            match tty {
                true => ProgressDrawTarget::stderr(),
                false => ProgressDrawTarget::hidden(),
            },
        );
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {msg} {bytes}/{total_bytes} {bytes_per_sec}, eta {eta}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(verb);
        let p = Self {
            bar,
            verb,
            objects,
            done_objects: 0,
            reported: 0,
            lines: !tty,
        };
        p.bar.set_message(p.count());
        if tty {
            p.bar.enable_steady_tick(Duration::from_millis(200));
        }
        p
    }

    fn count(&self) -> String {
        format!("{}/{} objects", self.done_objects, self.objects)
    }

    /// One object of `bytes` done (whatever its outcome).
    pub fn inc(&mut self, bytes: u64) {
        self.done_objects += 1;
        self.bar.inc(bytes);
        self.bar.set_message(self.count());
        if !self.lines {
            return;
        }
        let tenths = match (self.bar.length().unwrap_or(0), self.objects) {
            (0, 0) => 10,
            // Nothing but empty objects: count objects instead of bytes.
            (0, n) => self.done_objects * 10 / n,
            (total, _) => self.bar.position() * 10 / total,
        };
        if tenths > self.reported && tenths < 10 {
            self.reported = tenths;
            eprintln!("sealfs: {}", self.line());
        }
    }

    fn line(&self) -> String {
        let left = match self.bar.position() {
            0 => String::new(),
            _ => format!(", eta {}", HumanDuration(self.bar.eta())),
        };
        format!(
            "{} {} of {}, {} of {} ({}/s{left})",
            self.verb,
            self.done_objects,
            self.objects,
            HumanBytes(self.bar.position()),
            HumanBytes(self.bar.length().unwrap_or(0)),
            HumanBytes(self.bar.per_sec() as u64),
        )
    }

    /// Print a finding (to stdout) without tearing the bar.
    pub fn say(&self, line: &str) {
        self.bar.suspend(|| println!("{line}"));
    }

    /// Clear the bar; the caller prints the summary.
    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}

/// One long step of unknown length (a keyring rewrap through KMS): a spinner with the time
/// so far on a terminal, nothing otherwise.
pub fn spinner(what: &str) -> ProgressBar {
    let bar = match std::io::stderr().is_terminal() {
        true => ProgressBar::new_spinner(),
        false => ProgressBar::hidden(),
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("a valid template"),
    );
    bar.set_message(what.to_string());
    if !bar.is_hidden() {
        bar.enable_steady_tick(Duration::from_millis(120));
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_come_at_each_tenth_and_counts_add_up() {
        let mut p = Progress::with_target("verified", 20, 20 * 1024, false);
        for _ in 0..20 {
            p.inc(1024);
        }
        assert_eq!(p.reported, 9);
        assert_eq!(p.done_objects, 20);
        assert!(p
            .line()
            .starts_with("verified 20 of 20, 20.00 KiB of 20.00 KiB ("));
        p.finish();
    }

    #[test]
    fn empty_objects_count_by_object() {
        let mut p = Progress::with_target("rekeyed", 4, 0, false);
        p.inc(0);
        assert_eq!(p.reported, 2);
        p.inc(0);
        assert_eq!(p.reported, 5);
    }
}
