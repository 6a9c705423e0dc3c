//! Log lines written to stdout in batches.
//!
//! A request writes two lines at INFO. Handing each line to a writer thread that writes it at
//! once costs a wake-up of that thread (a context switch) and a `write` system call per line,
//! which on the sandboxed 2-vCPU machines the connector runs on were the largest part of its
//! cost beyond the work itself. Here a line is appended to a shared buffer (no system call,
//! unless it is the first of a batch), and a thread of its own writes the whole batch with one
//! `write` at most [`BATCH_WINDOW`] after the batch's first line.
//!
//! Nothing is dropped: a writer finding the buffer at [`MAX_PENDING`] waits until the batch
//! has gone out, and the guard writes whatever is left when it is dropped (at shutdown).

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How long the first line of a batch may wait for others before the batch is written.
pub(crate) const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// Bytes waiting at most; then writers wait for the batch to go out (no line is lost).
const MAX_PENDING: usize = 4 * 1024 * 1024;
/// A batch this large is written without waiting for the rest of the window.
const EARLY_WRITE: usize = 256 * 1024;

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    /// Signalled when the first line of a batch arrives, a batch grows large, or at close.
    work: Condvar,
    /// Signalled when a batch has been taken out of the buffer.
    room: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where the fmt layer writes: a handle on the shared buffer (cheap to clone).
#[derive(Clone)]
pub(crate) struct BatchWriter(Arc<Shared>);

/// Writes what is left and stops the writer thread when dropped.
pub(crate) struct BatchGuard {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A writer for `out` and the guard of its writer thread.
pub(crate) fn batched<W: Write + Send + 'static>(out: W) -> (BatchWriter, BatchGuard) {
    let shared = Arc::new(Shared::default());
    let worker = shared.clone();
    let thread = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || write_batches(&worker, out))
        .ok();
    (BatchWriter(shared.clone()), BatchGuard { shared, thread })
}

/// The writer thread: waits for a batch to start, lets it fill for [`BATCH_WINDOW`] (unless it
/// grows large or the guard closes), then writes it in one go.
fn write_batches(shared: &Shared, mut out: impl Write) {
    let mut batch = Vec::new();
    loop {
        let mut pending = shared.lock();
        while pending.lines.is_empty() && !pending.closed {
            pending = shared.work.wait(pending).unwrap_or_else(|e| e.into_inner());
        }
        if !pending.closed && pending.lines.len() < EARLY_WRITE {
            pending = shared
                .work
                .wait_timeout_while(pending, BATCH_WINDOW, |p| !p.closed && p.lines.len() < EARLY_WRITE)
                .map_or_else(|e| e.into_inner().0, |(p, _)| p);
        }
        std::mem::swap(&mut batch, &mut pending.lines);
        let closed = pending.closed;
        drop(pending);
        shared.room.notify_all();
        // A failing stdout (closed pipe) cannot be reported anywhere; the lines are dropped
        // rather than stopping the service.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        if closed && shared.lock().lines.is_empty() {
            return;
        }
    }
}

impl Write for BatchWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let shared = &self.0;
        let mut pending = shared.lock();
        while pending.lines.len() >= MAX_PENDING && !pending.closed {
            pending = shared.room.wait(pending).unwrap_or_else(|e| e.into_inner());
        }
        let first = pending.lines.is_empty();
        pending.lines.extend_from_slice(line);
        let large = pending.lines.len() >= EARLY_WRITE;
        drop(pending);
        if first || large {
            shared.work.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchWriter {
    type Writer = BatchWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Drop for BatchGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records each `write` it is given.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Recorder {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").push(bytes.to_vec());
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn many_lines_go_out_in_few_writes_and_all_of_them_at_close() {
        let recorder = Recorder::default();
        let (writer, guard) = batched(recorder.clone());
        for i in 0..1000 {
            writer
                .clone()
                .write_all(format!("line {i}\n").as_bytes())
                .expect("write");
        }
        drop(guard);
        let writes = recorder.0.lock().expect("lock").clone();
        let text: String = writes.iter().map(|w| String::from_utf8_lossy(w)).collect();
        let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(text, expected, "every line, in order");
        assert!(writes.len() <= 3, "{} writes for 1000 lines", writes.len());
    }

    #[test]
    fn a_lone_line_goes_out_without_waiting_for_more() {
        let recorder = Recorder::default();
        let (mut writer, _guard) = batched(recorder.clone());
        writer.write_all(b"alone\n").expect("write");
        let waited = std::time::Instant::now();
        while recorder.0.lock().expect("lock").is_empty() {
            assert!(waited.elapsed() < Duration::from_secs(5), "the line never went out");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(recorder.0.lock().expect("lock").concat(), b"alone\n");
    }

    #[test]
    fn writers_wait_for_room_instead_of_dropping_lines() {
        /// Takes its time, so the buffer fills up behind it.
        struct Slow(Recorder);
        impl Write for Slow {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                std::thread::sleep(Duration::from_millis(20));
                self.0.write(bytes)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let recorder = Recorder::default();
        let (writer, guard) = batched(Slow(recorder.clone()));
        let line = vec![b'x'; 64 * 1024];
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (mut w, line) = (writer.clone(), line.clone());
                std::thread::spawn(move || {
                    for _ in 0..40 {
                        w.write_all(&line).expect("write");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("writer");
        }
        drop(guard);
        let total: usize = recorder.0.lock().expect("lock").iter().map(Vec::len).sum();
        assert_eq!(total, 4 * 40 * line.len(), "nothing dropped");
    }
}
