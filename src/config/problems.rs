//! The collector of the validation pass: every problem found (with the variable's name) and
//! every warning, and the range checks the settings share.

use std::time::Duration;

use super::ConfigError;
use super::env::Field;

/// The longest time in seconds a duration setting takes (a day), except the TTLs counted in days.
const MAX_SECONDS: f64 = 86_400.0;

/// Every problem found, in the order the settings were read.
#[derive(Default)]
pub(crate) struct Problems {
    found: Vec<(&'static str, String)>,
    warnings: Vec<String>,
}

impl Problems {
    pub(crate) fn add(&mut self, var: &'static str, problem: impl Into<String>) {
        self.found.push((var, problem.into()));
    }

    pub(crate) fn warn(&mut self, warning: impl Into<String>) {
        self.warnings.push(warning.into());
    }

    /// The value of a check, or `None` with its problem recorded.
    pub(crate) fn ok<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.found.extend(e.problems);
                None
            }
        }
    }

    /// The value of a field, `None` when unset; an unreadable value is recorded.
    pub(crate) fn field<T>(&mut self, var: &'static str, field: Field<T>) -> Option<T> {
        match field {
            Field::Unset => None,
            Field::Set(v) => Some(v),
            Field::Invalid(why) => {
                self.add(var, why);
                None
            }
        }
    }

    /// Seconds within `[min, max]` (`min` 0 allows zero, else above zero).
    pub(crate) fn seconds(&mut self, var: &'static str, field: Field<f64>, default: f64, allow_zero: bool) -> Duration {
        let Some(secs) = self.field(var, field) else {
            return Duration::from_secs_f64(default);
        };
        let in_range = if allow_zero {
            (0.0..=MAX_SECONDS).contains(&secs)
        } else {
            secs > 0.0 && secs <= MAX_SECONDS
        };
        if !in_range {
            let low = if allow_zero { "0" } else { "above 0" };
            self.add(var, format!("must be {low} and at most {MAX_SECONDS} seconds"));
            return Duration::from_secs_f64(default);
        }
        Duration::from_secs_f64(secs)
    }

    /// A whole number within `[min, max]`.
    pub(crate) fn whole<T>(&mut self, var: &'static str, field: Field<i128>, default: T, min: T, max: T) -> T
    where
        T: TryFrom<i128> + Into<i128> + Copy + std::fmt::Display,
    {
        let Some(n) = self.field(var, field) else {
            return default;
        };
        match T::try_from(n) {
            Ok(v) if n >= min.into() && n <= max.into() => v,
            _ => {
                self.add(var, format!("must be between {min} and {max}"));
                default
            }
        }
    }

    pub(crate) fn flag(&mut self, var: &'static str, field: Field<bool>, default: bool) -> bool {
        self.field(var, field).unwrap_or(default)
    }

    /// Every problem as one error, or `Ok` with the warnings.
    pub(crate) fn finish(self) -> Result<Vec<String>, ConfigError> {
        if self.found.is_empty() {
            Ok(self.warnings)
        } else {
            Err(ConfigError { problems: self.found })
        }
    }
}
