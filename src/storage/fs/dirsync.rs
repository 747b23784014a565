//! Folder `fsync`s shared by the renames they cover (group commit).
//!
//! A file renamed into a folder is durable once the folder is `fsync`ed after
//! the rename. Many uploads finishing in the same folder at once each need
//! such a sync, but one that *starts* after all of their renames covers them
//! all. So a caller joins the next sync to start: while one runs, the callers
//! that arrive wait for it to end, then one of them starts the next for all
//! of them. Under load a folder sees about one sync at a time instead of one
//! per upload; alone, a caller syncs at once, as before.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};

/// The folders being synced in this process, each with its sync generations.
static FOLDERS: LazyLock<Mutex<HashMap<PathBuf, Arc<Folder>>>> = LazyLock::new(Default::default);

#[derive(Default)]
struct Folder {
    state: Mutex<Generations>,
    done: Condvar,
}

#[derive(Default)]
struct Generations {
    /// The last sync started (numbered from 1).
    started: u64,
    /// The last sync ended.
    ended: u64,
    /// The last sync that succeeded.
    succeeded: u64,
    /// How the last failed sync failed.
    failure: Option<(io::ErrorKind, Option<i32>)>,
    running: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain values updated in one step each: a panic never leaves them torn.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `fsync`s `dir` after the caller's rename into it: returns once a sync of the
/// folder that started after this call has succeeded, or with the error of
/// such a sync (every one of them failed).
pub(super) fn sync_dir_shared(dir: &Path) -> io::Result<()> {
    sync_shared(dir, |dir| File::open(dir)?.sync_all())
}

fn sync_shared(dir: &Path, sync: impl Fn(&Path) -> io::Result<()>) -> io::Result<()> {
    let folder = Arc::clone(lock(&FOLDERS).entry(dir.to_path_buf()).or_default());
    let result = join_next_sync(&folder, dir, sync);
    let mut folders = lock(&FOLDERS);
    // The map's reference and this one: nobody else syncs the folder now.
    if Arc::strong_count(&folder) == 2 {
        folders.remove(dir);
    }
    result
}

fn join_next_sync(
    folder: &Folder,
    dir: &Path,
    sync: impl Fn(&Path) -> io::Result<()>,
) -> io::Result<()> {
    let mut state = lock(&folder.state);
    // A sync running now may have started before the caller's rename: only
    // the next one to start is sure to cover it.
    let needed = state.started + 1;
    loop {
        if state.ended >= needed {
            if state.succeeded >= needed {
                return Ok(());
            }
            let (kind, code) = state.failure.unwrap_or((io::ErrorKind::Other, None));
            return Err(match code {
                Some(code) => io::Error::from_raw_os_error(code),
                None => io::Error::new(kind, "syncing the folder failed"),
            });
        }
        if !state.running {
            state.running = true;
            state.started += 1;
            let generation = state.started;
            drop(state);
            let result = sync(dir);
            state = lock(&folder.state);
            state.running = false;
            state.ended = generation;
            match &result {
                Ok(()) => state.succeeded = generation,
                Err(error) => state.failure = Some((error.kind(), error.raw_os_error())),
            }
            folder.done.notify_all();
            continue;
        }
        state = folder
            .done
            .wait(state)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Barrier;
    use std::time::Duration;

    #[test]
    fn a_lone_caller_syncs_at_once() {
        let dir = tempfile::tempdir().expect("dir");
        let syncs = AtomicUsize::new(0);
        for _ in 0..3 {
            sync_shared(dir.path(), |_| {
                syncs.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .expect("synced");
        }
        assert_eq!(syncs.load(Ordering::SeqCst), 3);
        assert!(!lock(&FOLDERS).contains_key(dir.path()));
    }

    #[test]
    fn callers_arriving_during_a_sync_share_the_next_one() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().to_path_buf();
        let syncs = Arc::new(AtomicUsize::new(0));
        let callers = 16;
        let barrier = Arc::new(Barrier::new(callers));
        let threads: Vec<_> = (0..callers)
            .map(|_| {
                let (path, syncs, barrier) =
                    (path.clone(), Arc::clone(&syncs), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    sync_shared(&path, |_| {
                        syncs.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(50));
                        Ok(())
                    })
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("no panic").expect("synced");
        }
        // The first sync, then at most a few for everyone who came during it.
        let syncs = syncs.load(Ordering::SeqCst);
        assert!(
            (2..=4).contains(&syncs),
            "{syncs} syncs for {callers} callers"
        );
    }

    #[test]
    fn a_caller_waits_for_a_sync_that_started_after_it() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().to_path_buf();
        // A sync that started before the caller's rename is running; the
        // caller must not return when it ends, only after the next one.
        let generation = Arc::new(AtomicUsize::new(0));
        let first_running = Arc::new(Barrier::new(2));
        let first = {
            let (path, generation, first_running) = (
                path.clone(),
                Arc::clone(&generation),
                Arc::clone(&first_running),
            );
            std::thread::spawn(move || {
                sync_shared(&path, |_| {
                    first_running.wait();
                    std::thread::sleep(Duration::from_millis(100));
                    generation.store(1, Ordering::SeqCst);
                    Ok(())
                })
            })
        };
        first_running.wait();
        let seen = Arc::new(AtomicUsize::new(0));
        let seen_in_sync = Arc::clone(&seen);
        let generation_in_sync = Arc::clone(&generation);
        sync_shared(&path, move |_| {
            seen_in_sync.store(
                generation_in_sync.load(Ordering::SeqCst) + 1,
                Ordering::SeqCst,
            );
            Ok(())
        })
        .expect("synced");
        // The caller's own sync ran after the first ended.
        assert_eq!(seen.load(Ordering::SeqCst), 2);
        first.join().expect("no panic").expect("synced");
    }

    #[test]
    fn a_failed_sync_fails_the_callers_it_was_to_cover() {
        let dir = tempfile::tempdir().expect("dir");
        let error = sync_shared(dir.path(), |_| Err(io::Error::from_raw_os_error(5)))
            .expect_err("the sync failed");
        assert_eq!(error.raw_os_error(), Some(5));
        // The next caller gets a sync of its own.
        sync_shared(dir.path(), |_| Ok(())).expect("synced");
    }
}
