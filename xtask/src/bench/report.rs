//! The report: each benchmark's table, every target with what was
//! measured, what was skipped and why, and the machine. Written to
//! `target/bench/report.md` and summarised on the console; a missed target
//! makes the run fail, naming the target and by how much it was missed.

use std::fmt::Write as _;

/// How a measured figure must compare with its limit.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Goal {
    /// At least the limit.
    AtLeast(f64),
    /// At most the limit.
    AtMost(f64),
    /// Strictly below the limit.
    Below(f64),
}

/// One target of the issue, and what this run measured for it.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// What is measured, in words.
    pub(crate) what: String,
    /// The measured figure (a median).
    pub(crate) measured: f64,
    pub(crate) goal: Goal,
    /// Unit of the figure and the limit, `""` for a ratio.
    pub(crate) unit: &'static str,
}

impl Target {
    pub(crate) fn new(
        what: impl Into<String>,
        measured: f64,
        goal: Goal,
        unit: &'static str,
    ) -> Target {
        Target {
            what: what.into(),
            measured,
            goal,
            unit,
        }
    }

    /// Whether the figure meets the goal.
    pub(crate) fn met(&self) -> bool {
        match self.goal {
            Goal::AtLeast(limit) => self.measured >= limit,
            Goal::AtMost(limit) => self.measured <= limit,
            Goal::Below(limit) => self.measured < limit,
        }
    }

    fn limit(&self) -> f64 {
        match self.goal {
            Goal::AtLeast(l) | Goal::AtMost(l) | Goal::Below(l) => l,
        }
    }

    /// The goal in words, such as `>= 0.50`.
    pub(crate) fn goal_text(&self) -> String {
        let (sign, limit) = match self.goal {
            Goal::AtLeast(l) => (">=", l),
            Goal::AtMost(l) => ("<=", l),
            Goal::Below(l) => ("<", l),
        };
        format!("{sign} {}{}", number(limit), self.unit)
    }

    /// `met`, or by how much the figure missed, in its unit and in percent
    /// of the limit.
    pub(crate) fn verdict(&self) -> String {
        if self.met() {
            return "met".to_owned();
        }
        let gap = (self.measured - self.limit()).abs();
        let percent = if self.limit() != 0.0 {
            gap / self.limit().abs() * 100.0
        } else {
            f64::INFINITY
        };
        let side = match self.goal {
            Goal::AtLeast(_) => "short",
            Goal::AtMost(_) | Goal::Below(_) => "over",
        };
        format!(
            "MISSED: {side} by {}{} ({percent:.0}%)",
            number(gap),
            self.unit
        )
    }

    /// One line naming the target, the figure and the verdict.
    pub(crate) fn line(&self) -> String {
        format!(
            "{}: {}{} (target {}): {}",
            self.what,
            number(self.measured),
            self.unit,
            self.goal_text(),
            self.verdict()
        )
    }
}

/// A figure with as many decimals as its size needs.
pub(crate) fn number(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// Everything one run found.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// `## title` and Markdown body, in order.
    pub(crate) sections: Vec<(String, String)>,
    pub(crate) targets: Vec<Target>,
    /// Targets or benchmarks not measured, with the reason.
    pub(crate) skipped: Vec<String>,
}

impl Report {
    pub(crate) fn section(&mut self, title: impl Into<String>, body: String) {
        self.sections.push((title.into(), body));
    }

    pub(crate) fn target(&mut self, target: Target) {
        self.targets.push(target);
    }

    pub(crate) fn skip(&mut self, why: impl Into<String>) {
        let why = why.into();
        eprintln!("bench: skipped: {why}");
        self.skipped.push(why);
    }

    /// The targets that were missed.
    pub(crate) fn missed(&self) -> Vec<&Target> {
        self.targets.iter().filter(|t| !t.met()).collect()
    }

    /// The whole report in Markdown, headed by `preamble`.
    pub(crate) fn markdown(&self, preamble: &str) -> String {
        let mut out = String::from(preamble);
        out.push_str("\n## Targets\n\n| target | measured | goal | verdict |\n|---|---|---|---|\n");
        for t in &self.targets {
            let _ = writeln!(
                out,
                "| {} | {}{} | {} | {} |",
                t.what,
                number(t.measured),
                t.unit,
                t.goal_text(),
                t.verdict()
            );
        }
        if !self.skipped.is_empty() {
            out.push_str("\nSkipped:\n\n");
            for s in &self.skipped {
                let _ = writeln!(out, "- {s}");
            }
        }
        for (title, body) in &self.sections {
            let _ = write!(out, "\n## {title}\n\n{body}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missed_target_says_by_how_much() {
        let t = Target::new("ratio", 0.4, Goal::AtLeast(0.5), "");
        assert!(!t.met());
        assert_eq!(t.verdict(), "MISSED: short by 0.10 (20%)");
        let t = Target::new("p99", 12.0, Goal::Below(10.0), " ms");
        assert_eq!(t.verdict(), "MISSED: over by 2.00 ms (20%)");
        assert!(Target::new("rss", 30.0, Goal::Below(64.0), " MB").met());
    }
}
