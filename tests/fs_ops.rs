//! The filesystem calls on both backends: metadata (path, symlink, open file), rename,
//! remove_file / remove_dir, create_dir / create_dir_all, hard_link, symlink, set_len, allocate,
//! sync_range, read_dir, copy, read and write; and their errors (a missing path, a file where a
//! directory should be, a non-empty directory, permission denied for a user without rights),
//! each keeping std's kind and naming the path.

mod common;

use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ringloop::fs;

fn tmp() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    (dir, path)
}

/// Checks an error's kind and that its message names `path`.
fn expect_err<T: std::fmt::Debug>(res: std::io::Result<T>, kind: ErrorKind, path: &Path) {
    let err = res.expect_err("the call should fail");
    assert_eq!(err.kind(), kind, "{err}");
    let shown = format!("{path:?}");
    assert!(
        err.to_string().contains(&shown),
        "{err} does not name {shown}"
    );
    // The kernel's error is the source.
    let source = std::error::Error::source(err.get_ref().expect("a named error")).unwrap();
    assert!(source.to_string().contains("os error"), "{source}");
}

both_backends! {
    fn metadata_of_files_dirs_and_links(lp: &mut EventLoop) {
        let (_guard, dir) = tmp();
        lp.run_until_complete(async move {
            let file = dir.join("f");
            fs::write(&file, vec![1u8; 1000]).await.unwrap();
            let std_meta = std::fs::metadata(&file).unwrap();
            let meta = fs::metadata(&file).await.unwrap();
            assert!(meta.is_file() && !meta.is_dir() && !meta.is_symlink());
            assert!(meta.file_type().is_file());
            assert_eq!(meta.len(), 1000);
            assert_eq!(meta.modified().unwrap(), std_meta.modified().unwrap());
            assert_eq!(meta.permissions().mode(), std_meta.permissions().mode() & 0o7777);
            use std::os::unix::fs::MetadataExt;
            assert_eq!(meta.ino(), std_meta.ino());
            assert_eq!(meta.dev(), std_meta.dev());
            assert_eq!(meta.nlink(), 1);

            let d = fs::metadata(&dir).await.unwrap();
            assert!(d.is_dir() && !d.is_file());

            let link = dir.join("l");
            fs::symlink(&file, &link).await.unwrap();
            assert!(fs::metadata(&link).await.unwrap().is_file(), "metadata follows links");
            let lm = fs::symlink_metadata(&link).await.unwrap();
            assert!(lm.is_symlink() && lm.file_type().is_symlink());

            let open = fs::File::open(&file).await.unwrap();
            let fm = open.metadata().await.unwrap();
            assert_eq!((fm.len(), fm.ino()), (1000, meta.ino()));

            let missing = dir.join("missing");
            expect_err(fs::metadata(&missing).await, ErrorKind::NotFound, &missing);
            expect_err(fs::symlink_metadata(&missing).await, ErrorKind::NotFound, &missing);
            let under_file = file.join("x");
            expect_err(fs::metadata(&under_file).await, ErrorKind::NotADirectory, &under_file);
        });
    }

    fn rename_remove_and_links(lp: &mut EventLoop) {
        let (_guard, dir) = tmp();
        lp.run_until_complete(async move {
            let a = dir.join("a");
            let b = dir.join("b");
            fs::write(&a, b"payload".to_vec()).await.unwrap();
            fs::rename(&a, &b).await.unwrap();
            assert!(!a.exists());
            assert_eq!(fs::read(&b).await.unwrap(), b"payload");
            expect_err(fs::rename(&a, &b).await, ErrorKind::NotFound, &a);

            let hard = dir.join("hard");
            fs::hard_link(&b, &hard).await.unwrap();
            assert_eq!(fs::metadata(&b).await.unwrap().nlink(), 2);
            expect_err(fs::hard_link(&b, &hard).await, ErrorKind::AlreadyExists, &hard);

            let soft = dir.join("soft");
            fs::symlink("b", &soft).await.unwrap();
            assert_eq!(std::fs::read_link(&soft).unwrap(), Path::new("b"));
            assert_eq!(fs::read(&soft).await.unwrap(), b"payload");

            fs::remove_file(&soft).await.unwrap();
            assert!(b.exists(), "removing a symlink keeps its target");
            fs::remove_file(&hard).await.unwrap();
            fs::remove_file(&b).await.unwrap();
            expect_err(fs::remove_file(&b).await, ErrorKind::NotFound, &b);
            expect_err(fs::remove_file(&dir).await, ErrorKind::IsADirectory, &dir);
        });
    }

    fn directories(lp: &mut EventLoop) {
        let (_guard, dir) = tmp();
        lp.run_until_complete(async move {
            let deep = dir.join("x/y/z");
            expect_err(fs::create_dir(&deep).await, ErrorKind::NotFound, &deep);
            fs::create_dir_all(&deep).await.unwrap();
            assert!(deep.is_dir());
            fs::create_dir_all(&deep).await.unwrap(); // exists already: fine
            fs::create_dir_all(dir.join("x/y/w")).await.unwrap();
            let top = dir.join("x");
            expect_err(fs::create_dir(&top).await, ErrorKind::AlreadyExists, &top);

            let file = dir.join("file");
            fs::write(&file, b"f".to_vec()).await.unwrap();
            let through = file.join("sub");
            assert!(fs::create_dir_all(&through).await.is_err());
            expect_err(fs::create_dir_all(&file).await, ErrorKind::AlreadyExists, &file);

            expect_err(fs::remove_dir(&top).await, ErrorKind::DirectoryNotEmpty, &top);
            expect_err(fs::remove_dir(&file).await, ErrorKind::NotADirectory, &file);
            fs::remove_dir(&deep).await.unwrap();
            assert!(!deep.exists());
            let gone = dir.join("gone");
            expect_err(fs::remove_dir(&gone).await, ErrorKind::NotFound, &gone);
        });
    }

    fn read_dir_lists_entries(lp: &mut EventLoop) {
        let (_guard, dir) = tmp();
        lp.run_until_complete(async move {
            // More than one batch of the pool's listing.
            let mut want = Vec::new();
            for i in 0..150 {
                let name = format!("file{i:03}");
                fs::write(dir.join(&name), vec![0u8; i]).await.unwrap();
                want.push(name);
            }
            fs::create_dir(dir.join("sub")).await.unwrap();
            fs::symlink("file000", dir.join("link")).await.unwrap();
            want.extend(["sub".to_owned(), "link".to_owned()]);
            want.sort();

            let mut got = Vec::new();
            let mut entries = fs::read_dir(&dir).await.unwrap();
            // A next_entry dropped after one poll loses nothing: either that poll returned an
            // entry, or the trip to the pool it started is picked up by the next call.
            {
                let mut first = std::pin::pin!(entries.next_entry());
                let polled = std::future::poll_fn(|cx| {
                    std::task::Poll::Ready(first.as_mut().poll(cx))
                })
                .await;
                if let std::task::Poll::Ready(entry) = polled {
                    got.push(entry.unwrap().unwrap().file_name().into_string().unwrap());
                }
            }
            while let Some(e) = entries.next_entry().await.unwrap() {
                let name = e.file_name().into_string().unwrap();
                assert_eq!(e.path(), dir.join(&name));
                let t = e.file_type().await.unwrap();
                match name.as_str() {
                    "sub" => assert!(t.is_dir()),
                    "link" => assert!(t.is_symlink()),
                    _ => {
                        assert!(t.is_file());
                        let len: usize = name[4..].parse().unwrap();
                        assert_eq!(e.metadata().await.unwrap().len(), len as u64);
                    }
                }
                got.push(name);
            }
            assert!(entries.next_entry().await.unwrap().is_none(), "stays at the end");
            got.sort();
            assert_eq!(got, want, "every entry once");
            assert!(!got.iter().any(|n| n == "." || n == ".."));

            let missing = dir.join("missing");
            expect_err(fs::read_dir(&missing).await, ErrorKind::NotFound, &missing);
            let file = dir.join("file001");
            expect_err(fs::read_dir(&file).await, ErrorKind::NotADirectory, &file);
        });
    }

    fn set_len_allocate_and_sync_range(lp: &mut EventLoop) {
        let (_guard, dir) = tmp();
        lp.run_until_complete(async move {
            let path = dir.join("data");
            let f = fs::File::options().read(true).write(true).create(true).open(&path).await.unwrap();
            let (res, _) = f.write_all_at(vec![9u8; 10_000], 0).await;
            res.unwrap();
            f.set_len(100).await.unwrap();
            assert_eq!(f.len().await.unwrap(), 100);
            f.set_len(5000).await.unwrap();
            assert_eq!(f.len().await.unwrap(), 5000);
            let (res, buf) = f.read_at(Vec::with_capacity(5000), 0).await;
            assert_eq!(res.unwrap(), 5000);
            assert!(buf[..100].iter().all(|&b| b == 9) && buf[100..].iter().all(|&b| b == 0));

            f.allocate(0, 1 << 20).await.unwrap();
            let meta = f.metadata().await.unwrap();
            assert_eq!(meta.len(), 1 << 20, "allocate grows the file");
            assert!(meta.blocks() * 512 >= 1 << 20, "and reserves the blocks");
            // Punch a hole: the length stays, the bytes read as zeros.
            f.allocate_with_mode(libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, 0, 4096)
                .await
                .unwrap();
            assert_eq!(f.len().await.unwrap(), 1 << 20);

            let (res, _) = f.write_all_at(vec![1u8; 64 * 1024], 0).await;
            res.unwrap();
            f.sync_range(0, 64 * 1024, libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER)
                .await
                .unwrap();
            f.sync_range(0, 0, libc::SYNC_FILE_RANGE_WRITE).await.unwrap();
            let err = f.sync_range(0, 0, 0x80).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");

            let ro = fs::File::open(&path).await.unwrap();
            let err = ro.set_len(10).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
            assert!(err.to_string().contains("open for writing"), "{err}");
            assert!(ro.allocate(0, 10).await.is_err());
        });
    }

    fn copy_read_and_write(lp: &mut EventLoop) {
        let (_guard, dir) = tmp();
        lp.run_until_complete(async move {
            let from = dir.join("from");
            let to = dir.join("to");
            let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
            fs::write(&from, data.clone()).await.unwrap();
            std::fs::set_permissions(&from, std::fs::Permissions::from_mode(0o640)).unwrap();
            assert_eq!(fs::copy(&from, &to).await.unwrap(), data.len() as u64);
            assert_eq!(fs::read(&to).await.unwrap(), data);
            assert_eq!(fs::metadata(&to).await.unwrap().permissions().mode() & 0o777, 0o640);
            let missing = dir.join("missing");
            expect_err(fs::copy(&missing, &to).await, ErrorKind::NotFound, &missing);
            expect_err(fs::read(&missing).await, ErrorKind::NotFound, &missing);
            let nodir = dir.join("no/such/dir");
            expect_err(fs::write(&nodir, b"x".to_vec()).await, ErrorKind::NotFound, &nodir);
        });
    }

    fn permission_denied_for_a_user_without_rights(lp: &mut EventLoop) {
        let Some(locked) = std::env::var_os("RINGLOOP_TEST_LOCKED").map(PathBuf::from) else {
            // The parent: makes a directory nobody may write into, and runs the test as nobody
            // in a child (dropping privileges is for the whole process).
            let (_guard, dir) = tmp();
            let locked = dir.join("locked");
            std::fs::create_dir(&locked).unwrap();
            std::fs::write(locked.join("inside"), b"x").unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
            let name = common::test_path(lp.backend(), "permission_denied_for_a_user_without_rights");
            let env = locked.to_str().unwrap();
            common::run_in_child(&name, &[("RINGLOOP_TEST_LOCKED", env)]);
            std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
            return;
        };
        // SAFETY: getuid takes no arguments.
        if unsafe { libc::getuid() } == 0 {
            // SAFETY: setgid/setuid take plain ids; glibc applies them to every thread.
            let ok = unsafe { libc::setgid(65534) == 0 && libc::setuid(65534) == 0 };
            assert!(ok, "dropping to nobody: {}", std::io::Error::last_os_error());
        }
        lp.run_until_complete(async move {
            let new = locked.join("new");
            expect_err(fs::create_dir(&new).await, ErrorKind::PermissionDenied, &new);
            let inside = locked.join("inside");
            expect_err(fs::remove_file(&inside).await, ErrorKind::PermissionDenied, &inside);
            expect_err(fs::write(&new, b"x".to_vec()).await, ErrorKind::PermissionDenied, &new);
            expect_err(fs::rename(&inside, &new).await, ErrorKind::PermissionDenied, &inside);
            expect_err(fs::create_dir_all(locked.join("a/b")).await, ErrorKind::PermissionDenied, &locked.join("a"));
            // Reading is allowed (0555).
            assert_eq!(fs::read(&inside).await.unwrap(), b"x");
        });
    }
}
