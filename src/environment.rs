//! The one rule every `BACKPROP_*` variable the library and the command line read follows: unset or empty
//! (blank) is the default; a switch takes `1` (on) or `0` (off); a named value is matched whatever its case;
//! anything else is an error that names the variable, what it holds and the values it takes.

use crate::error::{Error, Result};

/// The value of the variable `name`, trimmed; `None` where it is unset or blank. A value that is not
/// UTF-8 is an error that names the variable.
pub fn read(name: &str) -> Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) => Ok(given(Some(&v)).map(str::to_string)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => {
            Err(Error::Invalid(format!("{name} is '{}', which is not UTF-8", v.to_string_lossy())))
        }
    }
}

/// `value` trimmed, or `None` where it is absent or blank: the default.
pub fn given(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// The switch `name`: on with `1`, off with `0` or unset (or blank); anything else is an error.
pub fn switch(name: &str) -> Result<bool> {
    switch_value(name, read(name)?.as_deref())
}

/// `switch` of a value read already (`value` is what `name` holds, `None` where unset).
pub fn switch_value(name: &str, value: Option<&str>) -> Result<bool> {
    Ok(choice_value(name, value, &[("1", true), ("0", false)])?.unwrap_or(false))
}

/// The value of `name` among `choices` (names matched whatever their case), `None` where unset or blank.
pub fn choice<T: Copy>(name: &str, choices: &[(&str, T)]) -> Result<Option<T>> {
    choice_value(name, read(name)?.as_deref(), choices)
}

/// `choice` of a value read already (`value` is what `name` holds, `None` where unset).
pub fn choice_value<T: Copy>(name: &str, value: Option<&str>, choices: &[(&str, T)]) -> Result<Option<T>> {
    let Some(v) = given(value) else { return Ok(None) };
    match choices.iter().find(|(n, _)| n.eq_ignore_ascii_case(v)) {
        Some(&(_, t)) => Ok(Some(t)),
        None => Err(invalid(name, v, &choices.iter().map(|(n, _)| *n).collect::<Vec<_>>())),
    }
}

/// The error of a variable `name` that holds `value`, where it may hold one of `accepted`:
/// "BACKPROP_GPU_PATH is 'x'; it may be rule, fused, unfused or timed (or unset)".
pub fn invalid(name: &str, value: &str, accepted: &[&str]) -> Error {
    let list = match accepted {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    };
    Error::Invalid(format!("{name} is '{value}'; it may be {list} (or unset)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_and_blank_are_the_default() {
        for blank in [None, Some(""), Some("  "), Some("\t")] {
            assert_eq!(given(blank), None, "{blank:?}");
            assert!(!switch_value("BACKPROP_X", blank).unwrap(), "{blank:?}");
            assert_eq!(choice_value("BACKPROP_X", blank, &[("a", 1)]).unwrap(), None, "{blank:?}");
        }
        assert_eq!(given(Some(" fused\n")), Some("fused"));
    }

    #[test]
    fn a_switch_takes_1_or_0_and_nothing_else() {
        assert!(switch_value("BACKPROP_X", Some("1")).unwrap());
        assert!(switch_value("BACKPROP_X", Some(" 1 ")).unwrap());
        assert!(!switch_value("BACKPROP_X", Some("0")).unwrap(), "0 is off, not 'set'");
        for bad in ["true", "yes", "on", "2", "01", "-1", "off"] {
            let e = switch_value("BACKPROP_NO_VEC4", Some(bad)).unwrap_err().to_string();
            assert_eq!(e, format!("BACKPROP_NO_VEC4 is '{bad}'; it may be 1 or 0 (or unset)"));
        }
    }

    #[test]
    fn names_match_whatever_their_case_and_others_are_listed() {
        let choices = [("rule", 0), ("fused", 1), ("unfused", 2), ("timed", 3)];
        assert_eq!(choice_value("BACKPROP_X", Some("FUSED"), &choices).unwrap(), Some(1));
        assert_eq!(choice_value("BACKPROP_X", Some("Timed"), &choices).unwrap(), Some(3));
        let e = choice_value("BACKPROP_GPU_PATH", Some("x"), &choices).unwrap_err().to_string();
        assert_eq!(e, "BACKPROP_GPU_PATH is 'x'; it may be rule, fused, unfused or timed (or unset)");
        let e = choice_value("BACKPROP_Y", Some("b"), &[("a", ())]).unwrap_err().to_string();
        assert_eq!(e, "BACKPROP_Y is 'b'; it may be a (or unset)");
    }

    #[test]
    fn the_environment_is_read_by_the_same_rule() {
        // Names no test or tool sets.
        assert_eq!(read("BACKPROP_ENVIRONMENT_TEST_UNSET").unwrap(), None);
        assert!(!switch("BACKPROP_ENVIRONMENT_TEST_UNSET").unwrap());
        assert_eq!(choice("BACKPROP_ENVIRONMENT_TEST_UNSET", &[("a", 1)]).unwrap(), None);
    }
}
