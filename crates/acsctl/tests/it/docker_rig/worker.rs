//! The `vmm-worker --runtime docker` processes of a run. Each run has its own worker ids (not
//! LocalCluster's fixed `w1..wN`), so parallel runs and leftovers of killed runs do not meet.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use acs_cluster::log_tail;

/// One `vmm-worker --runtime docker` child process; SIGTERM (then SIGKILL) on drop.
pub struct WorkerProc {
    pub id: String,
    program: PathBuf,
    args: Vec<String>,
    /// The worker's NATS identity (`LocalCluster::worker_env`).
    env: Vec<(&'static str, String)>,
    pub log: PathBuf,
    child: Option<Child>,
    /// Starts so far (the log of start `n` is `<id>.<n>.log`).
    starts: u32,
}

impl WorkerProc {
    pub fn spawn(
        id: String,
        program: PathBuf,
        args: Vec<String>,
        env: Vec<(&'static str, String)>,
        log_dir: &Path,
    ) -> WorkerProc {
        let mut w = WorkerProc {
            env,
            log: log_dir.join(format!("{id}.1.log")),
            id,
            program,
            args,
            child: None,
            starts: 0,
        };
        w.start();
        w
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.id);
        self.starts += 1;
        self.log = self
            .log
            .with_file_name(format!("{}.{}.log", self.id, self.starts));
        let out = File::create(&self.log).expect("create worker log");
        let err = out.try_clone().expect("clone log file");
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (*k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        // If this test process dies (e.g. killed on timeout), the worker gets SIGTERM and stops
        // its containers. Spawned from the test's own thread, which lives as long as the test.
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        self.child = Some(cmd.spawn().expect("start vmm-worker"));
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("worker is running").id()
    }

    /// `kill -9`: the worker dies at once and leaves its containers running.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        // SAFETY: plain syscall on a child we have not reaped.
        unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop within {grace:?}; killing it", self.id);
        let _ = c.kill();
        let _ = c.wait();
    }

    /// `Err(exit status and log tail)` when the process has exited.
    pub fn check(&mut self) -> Result<(), String> {
        let Some(c) = self.child.as_mut() else {
            return Ok(());
        };
        match c.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Err(format!(
                    "worker {} exited ({status}); last lines of {}:\n{}",
                    self.id,
                    self.log.display(),
                    log_tail(&self.log, 30)
                ))
            }
            _ => Ok(()),
        }
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(15));
    }
}
