//! S3-specific behaviour: preflight before any API call, multipart uploads.

use std::sync::Arc;

use object_store::ObjectStoreExt;
use trtc_usage::lake::store::Destination;

use crate::util::*;

fn preflight_fails(mutate: impl FnOnce(&mut std::process::Command), needle: &str) {
    let Some(dest) = TestDest::s3() else { return };
    let sim = start_sim(sim_config());
    let mut c = cmd(&sim, &dest);
    mutate(&mut c);
    let r = run(c, &date_args(&[APP_A], days_ago(9)));
    r.assert_code(2);
    assert_eq!(
        sim.stats().requests,
        0,
        "no API call is spent on an unusable destination"
    );
    r.assert_stderr_has(&["is not usable", needle]);
    let error_lines = r.stderr.lines().filter(|l| l.contains("ERROR")).count();
    assert_eq!(error_lines, 1, "one clear line:\n{}", r.stderr);
}

#[test]
fn preflight_no_such_bucket_exits_2_without_calls() {
    preflight_fails(
        |c| {
            c.env("TRTC_DEST", "s3://no-such-bucket-here/x");
        },
        "--dest s3://no-such-bucket-here/x",
    );
}

#[test]
fn preflight_bad_secret_exits_2_without_calls() {
    preflight_fails(
        |c| {
            c.env("AWS_SECRET_ACCESS_KEY", "not-the-secret");
        },
        "--dest s3://",
    );
}

#[test]
fn preflight_error_does_not_show_the_s3_secret() {
    let Some(dest) = TestDest::s3() else { return };
    let sim = start_sim(sim_config());
    let mut c = cmd(&sim, &dest);
    c.env("AWS_SECRET_ACCESS_KEY", "sEcReT-s3-key-never-shown")
        .env("RUST_LOG", "trace");
    let r = run(c, &date_args(&[APP_A], days_ago(9)));
    r.assert_code(2);
    assert!(
        !r.stderr.contains("sEcReT-s3-key-never-shown")
            && !r.stdout.contains("sEcReT-s3-key-never-shown")
    );
}

/// Large files go up in parts, from memory or from a spool file; what
/// lands is byte-identical.
fn multipart_round_trip(dest: Destination) {
    use std::io::Write;
    let path = dest.part_path(trtc_usage::tables::Table::ROOM_USAGE, 1, days_ago(3));
    let bytes: Vec<u8> = (0..(11 * 1024 * 1024)).map(|i| (i % 251) as u8).collect();
    let spool_dir = tempfile::tempdir().unwrap();
    let spool = trtc_usage::spool::SpoolConfig {
        dir: spool_dir.path().to_owned(),
        memory_limit: 1024,
        in_lake: false,
    };
    let mut spooled = spool.writer();
    spooled.write_all(&bytes).unwrap();
    for file in [
        trtc_usage::spool::Spooled::Memory(bytes.clone()),
        spooled.finish().unwrap(),
    ] {
        block_on(trtc_usage::lake::upload::put_file(
            &dest,
            &path,
            file,
            1024 * 1024,
            5 * 1024 * 1024,
        ))
        .unwrap();
        let back = block_on(async {
            dest.store()
                .get(&path)
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
        });
        assert!(back == bytes, "uploaded bytes differ");
    }
}

#[test]
fn multipart_upload_on_s3() {
    let Some(dest) = TestDest::s3() else { return };
    multipart_round_trip(dest.open());
}

#[test]
fn multipart_upload_on_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
    multipart_round_trip(Destination::from_store(
        Arc::new(store),
        Default::default(),
        "local",
    ));
}
