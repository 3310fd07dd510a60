//! Disk faults on the real binary: a data directory on a small tmpfs that fills up.
//!
//! Mounting needs root (CAP_SYS_ADMIN): without it the test says so loudly and passes, except
//! under CI (`CI` set), where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use hexkv_e2e::Server;
use reqwest::{Client, StatusCode};

use crate::{get, put};

/// A tmpfs mounted on a fresh directory, unmounted when dropped.
struct Tmpfs {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("temp dir");
        // The mount is the data directory itself: the harness keeps its logs beside it
        // (`data.run`), on the real disk.
        let path = dir.path().join("data");
        std::fs::create_dir(&path).expect("mount point");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .is_ok_and(|out| out.status.success());
        mounted.then_some(Tmpfs { _dir: dir, path })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn tmpfs_or_skip(size: &str, test: &str) -> Option<Tmpfs> {
    let fs = Tmpfs::mount(size);
    if fs.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: cannot mount a tmpfs (not root?), and CI is set: the disk-fault test must run"
        );
        eprintln!("*** SKIPPED {test}: cannot mount a tmpfs (needs root) ***");
    }
    fs
}

fn ballast(dir: &Path, bytes: usize) -> PathBuf {
    let path = dir.join("ballast");
    std::fs::write(&path, vec![0xa5u8; bytes]).expect("ballast");
    path
}

/// The disk fills up: writes get 503 `unavailable` with nothing changed, reads and probes keep
/// working, the process stays up; once space returns writes resume, and after a restart every
/// acknowledged write is there.
#[tokio::test]
async fn a_full_disk_fails_writes_with_503_and_nothing_else() {
    let Some(fs) = tmpfs_or_skip("2m", "a_full_disk_fails_writes_with_503_and_nothing_else") else {
        return;
    };
    // Half the disk is taken by a file the test removes later to give space back (the store
    // leaves files it does not know alone).
    let ballast = ballast(&fs.path, 1024 * 1024);
    let data = fs.path.clone();
    let server = Server::start(&data, &[], &[]);
    let http = Client::new();

    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..64 {
        let key = format!("big/{i}");
        let value = vec![b'0' + (i % 10) as u8; 64 * 1024];
        let response = http
            .put(server.url(&format!("/v1/kv/{key}")))
            .body(value.clone())
            .send()
            .await
            .expect("PUT");
        match response.status() {
            StatusCode::CREATED => acked.push((key, crate::etag(&response).unwrap(), value)),
            StatusCode::SERVICE_UNAVAILABLE => {
                let content_type = response.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .to_owned();
                let body: serde_json::Value =
                    serde_json::from_slice(&response.bytes().await.expect("body"))
                        .expect("problem body");
                refused = Some((key, content_type, body));
                break;
            }
            other => panic!("unexpected {other} while the disk fills"),
        }
    }
    let (refused_key, content_type, body) = refused.expect("the disk never filled up");
    assert!(!acked.is_empty(), "no write fitted before the disk filled");
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(body["code"], "unavailable", "{body}");
    // The refused write changed nothing; earlier writes and probes are served.
    assert_eq!(get(&http, &server, &refused_key).await, None);
    for (key, version, value) in &acked {
        assert_eq!(
            get(&http, &server, key).await,
            Some((*version, value.clone()))
        );
    }
    for probe in ["/healthz", "/metrics"] {
        let status = http.get(server.url(probe)).send().await.unwrap().status();
        assert_eq!(status, StatusCode::OK, "{probe} while the disk is full");
    }
    // Still full: still refused, still nothing changed.
    let (status, _) = put(&http, &server, &refused_key, vec![b'x'; 64 * 1024]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    // Space returns: writes resume without a restart.
    std::fs::remove_file(&ballast).expect("remove the ballast");
    let (status, version) = put(&http, &server, &refused_key, b"fits now".to_vec()).await;
    assert_eq!(status, StatusCode::CREATED);
    acked.push((refused_key.clone(), version.unwrap(), b"fits now".to_vec()));
    assert!(server.terminate().success());

    let server = Server::start(&data, &[], &[]);
    for (key, version, value) in &acked {
        assert_eq!(
            get(&http, &server, key).await,
            Some((*version, value.clone())),
            "{key} after a restart"
        );
    }
    assert!(server.terminate().success());
}
