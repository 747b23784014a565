//! The threads a backend's bodies are written on: a few long-lived threads
//! fed by one queue.
//!
//! A body is written batch by batch, each a short positional write into the
//! page cache. On tokio's blocking pool each such write wakes a parked
//! thread, and the pool grows a thread per upload in flight, so many uploads
//! at once spend more time switching threads than copying bytes. Here a
//! thread that finishes a job takes the next one from the queue without
//! sleeping: under load the threads stay busy and the jobs cost no wake-up.
//! Threads are started as jobs find none idle, up to a fixed number, and end
//! when the backend is dropped. Jobs that wait on the disk for long (`fsync`)
//! do not belong here: they stay on tokio's blocking pool.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The write threads of one backend; see the module documentation.
#[derive(Debug)]
pub(super) struct WriteThreads {
    shared: Arc<Shared>,
    max: usize,
}

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Threads started and not ended.
    threads: usize,
    /// Threads waiting for a job.
    idle: usize,
    /// Set when the backend is dropped: threads end once the queue is empty.
    closed: bool,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("jobs", &self.jobs.len())
            .field("threads", &self.threads)
            .field("idle", &self.idle)
            .field("closed", &self.closed)
            .finish()
    }
}

/// A job that ended without a result: it panicked, or no thread could be
/// started for it.
#[derive(Debug)]
pub(super) struct JobLost;

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Jobs run outside the lock and the queue's fields are plain
        // values: a panic never leaves it half-updated.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl WriteThreads {
    /// Threads for one backend: as many as the machine runs at once, at
    /// least two and at most eight (writes into the page cache are short,
    /// yet one can wait on the disk).
    pub(super) fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        WriteThreads {
            shared: Arc::new(Shared::default()),
            max: cores.clamp(2, 8),
        }
    }

    /// Runs `job` on one of the threads; the future resolves to its result.
    /// Dropping the future does not stop the job.
    pub(super) fn run<T, F>(&self, job: F) -> impl Future<Output = Result<T, JobLost>>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            // The receiver may be gone (the upload was dropped): the job
            // still ran to its end, which is all it owes.
            let _ = done.send(job());
        });
        let start = {
            let mut queue = self.shared.queue();
            queue.jobs.push_back(job);
            if queue.idle > 0 {
                self.shared.ready.notify_one();
                false
            } else if queue.threads < self.max {
                queue.threads += 1;
                true
            } else {
                false
            }
        };
        if start && self.start_thread().is_err() {
            let mut queue = self.shared.queue();
            queue.threads -= 1;
            if queue.threads == 0 {
                // No thread will ever take the queued jobs: drop them, so
                // their futures end with `JobLost` instead of waiting.
                queue.jobs.clear();
            }
        }
        async move { result.await.map_err(|_| JobLost) }
    }

    fn start_thread(&self) -> std::io::Result<()> {
        let shared = Arc::clone(&self.shared);
        std::thread::Builder::new()
            .name("tsu-fs-write".into())
            .spawn(move || work(&shared))
            .map(drop)
    }
}

impl Drop for WriteThreads {
    fn drop(&mut self) {
        self.shared.queue().closed = true;
        self.shared.ready.notify_all();
    }
}

/// A thread's life: jobs until the backend is gone and the queue empty.
fn work(shared: &Shared) {
    let mut queue = shared.queue();
    loop {
        if let Some(job) = queue.jobs.pop_front() {
            drop(queue);
            // A panicking job drops its sender: its future ends with
            // `JobLost`, and the thread goes on.
            let _ = catch_unwind(AssertUnwindSafe(job));
            queue = shared.queue();
            continue;
        }
        if queue.closed {
            queue.threads -= 1;
            return;
        }
        queue.idle += 1;
        queue = shared
            .ready
            .wait(queue)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        queue.idle -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn jobs_run_and_return_their_results() {
        let threads = WriteThreads::new();
        let results =
            futures_util::future::join_all((0..100).map(|i| threads.run(move || i * 2))).await;
        let results: Vec<_> = results.into_iter().map(Result::unwrap).collect();
        assert_eq!(results, (0..100).map(|i| i * 2).collect::<Vec<_>>());
        assert!(threads.shared.queue().threads <= threads.max);
    }

    #[tokio::test]
    async fn a_panicking_job_is_lost_and_the_threads_go_on() {
        let threads = WriteThreads::new();
        let lost = threads.run(|| -> u32 { panic!("a job panics") }).await;
        assert!(lost.is_err());
        assert_eq!(threads.run(|| 7).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn jobs_wait_for_a_busy_thread_rather_than_start_more_than_the_cap() {
        let threads = WriteThreads {
            shared: Arc::new(Shared::default()),
            max: 2,
        };
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let jobs = (0..8).map(|_| {
            let (running, most) = (Arc::clone(&running), Arc::clone(&most));
            threads.run(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
                running.fetch_sub(1, Ordering::SeqCst);
            })
        });
        for result in futures_util::future::join_all(jobs).await {
            result.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn threads_end_when_the_backend_is_dropped() {
        let threads = WriteThreads::new();
        threads.run(|| ()).await.unwrap();
        let shared = Arc::clone(&threads.shared);
        drop(threads);
        for _ in 0..200 {
            if shared.queue().threads == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("threads still running: {:?}", shared.queue());
    }
}
