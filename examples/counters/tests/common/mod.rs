//! What the tests that start the binary share.

use std::io::{BufRead as _, BufReader, Lines};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout};

/// The child's JSON log lines from its standard output.
pub(crate) type LogLines = Lines<BufReader<ChildStdout>>;

/// Reads the child's log until it says its `http` listener listens: that address, and the lines
/// after it.
///
/// # Panics
/// When the child ends first, or logs a line that is not JSON.
pub(crate) fn listening(child: &mut Child) -> (SocketAddr, LogLines) {
    let stdout = child.stdout.take().expect("the child's stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = lines
            .next()
            .expect("the service logs until it listens")
            .unwrap();
        let event: serde_json::Value = serde_json::from_str(&line).expect("JSON log lines");
        if event["message"] == "listening" && event["listener"] == "http" {
            return (event["addr"].as_str().unwrap().parse().unwrap(), lines);
        }
    }
}
