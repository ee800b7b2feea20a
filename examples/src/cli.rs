//! Command-line flags, parsed by hand: `--name value` pairs and `--help`.

use std::collections::HashMap;
use std::process::ExitCode;
use std::str::FromStr;

use zap::transport::Url;

use crate::Error;

/// The URL the examples listen on when `--url` is not given.
pub const DEFAULT_URL: &str = "zap://127.0.0.1:0";

/// Parsed `--name value` flags.
#[derive(Debug, Default)]
pub struct Args {
    values: HashMap<String, String>,
}

impl Args {
    /// Parses the process arguments. `flags` are the names accepted besides
    /// `url` (without `--`); `usage` is printed for `--help`, after which
    /// the process exits.
    pub fn from_env(usage: &str, flags: &[&str]) -> Result<Self, Error> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if args.iter().any(|a| a == "--help" || a == "-h") {
            println!("{usage}");
            std::process::exit(0);
        }
        Self::parse(args, flags).map_err(|e| format!("{e}\n\n{usage}").into())
    }

    /// Parses `args` (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>, flags: &[&str]) -> Result<Self, Error> {
        let mut values = HashMap::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let Some(name) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument `{arg}`").into());
            };
            let (name, value) = match name.split_once('=') {
                Some((n, v)) => (n.to_owned(), v.to_owned()),
                None => {
                    let v = args
                        .next()
                        .ok_or_else(|| format!("flag --{name} needs a value"))?;
                    (name.to_owned(), v)
                }
            };
            if name != "url" && !flags.contains(&name.as_str()) {
                return Err(format!("unknown flag --{name}").into());
            }
            values.insert(name, value);
        }
        Ok(Args { values })
    }

    /// `--url`, or [`DEFAULT_URL`].
    pub fn url(&self) -> Result<Url, Error> {
        let s = self.values.get("url").map_or(DEFAULT_URL, String::as_str);
        Url::parse(s).map_err(|e| format!("--url {s}: {e}").into())
    }

    /// The number given as `--name` (`_` separators allowed: `100_000`), or
    /// `default`.
    pub fn number<T: FromStr>(&self, name: &str, default: T) -> Result<T, Error>
    where
        T::Err: std::fmt::Display,
    {
        match self.values.get(name) {
            None => Ok(default),
            Some(v) => v
                .replace('_', "")
                .parse()
                .map_err(|e| format!("--{name} {v}: {e}").into()),
        }
    }
}

/// The exit code for a binary's result, printing the error (with its
/// chain of sources) to stderr.
pub fn report(result: Result<(), Error>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = e.source();
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn args(s: &[&str]) -> Result<Args, Error> {
        Args::parse(s.iter().map(|s| s.to_string()), &["blocks"])
    }

    #[test]
    fn flags_and_defaults() {
        let a = args(&["--blocks", "1_000", "--url=zap+unix:///tmp/x.sock"]).unwrap();
        assert_eq!(a.number("blocks", 1u64).unwrap(), 1000);
        assert_eq!(a.number("size", 7u64).unwrap(), 7);
        assert_eq!(a.url().unwrap().to_string(), "zap+unix:///tmp/x.sock");
        assert_eq!(args(&[]).unwrap().url().unwrap().to_string(), DEFAULT_URL);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(args(&["--nope", "1"]).is_err());
        assert!(args(&["--blocks"]).is_err());
        assert!(args(&["blocks"]).is_err());
        assert!(
            args(&["--blocks", "x"])
                .unwrap()
                .number("blocks", 1u64)
                .is_err()
        );
        assert!(args(&["--url", "http://x"]).unwrap().url().is_err());
    }
}
