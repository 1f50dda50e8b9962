//! The real `capsa-shim` binary, outside a container: programs are precompiled here with the
//! shared `engine_config` (as capsa-runtime does), the artifact is opened and handed over with
//! `--artifact-fd`, and the tests check what a container's user would see: output, exit status,
//! messages.
//!
//! They run the static shim that scripts/build-shim.sh puts in target/<profile>/ (the binary
//! capsa-runtime execs); `CAPSA_SHIM=/path/to/capsa-shim` runs them against another build (e.g.
//! the release one: `scripts/build-shim.sh --release`).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use capsa_shim::{Features, engine_config};
use wasmtime::Engine;

/// A directory for this test process's files, under cargo's scratch space for integration
/// tests, removed when the process exits (each nextest test is its own process).
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("capsa-shim-tests-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        extern "C" fn remove_scratch() {
            if let Some(dir) = DIR.get() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        // SAFETY: `remove_scratch` is a plain `extern "C" fn` with no arguments that only reads a
        // static already initialised; atexit merely records it.
        unsafe { libc::atexit(remove_scratch) };
        dir
    })
}

fn engine() -> Engine {
    Engine::new(&engine_config(&Features::default())).expect("engine")
}

fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch().join(name);
    std::fs::write(&path, bytes).expect("write artifact");
    path
}

/// Precompiles a core module given as WAT.
fn module_wat(name: &str, wat: &str) -> PathBuf {
    let wasm = wat::parse_str(wat).expect("valid wat");
    write(
        name,
        &engine().precompile_module(&wasm).expect("precompile"),
    )
}

/// Precompiles a component given as WAT.
fn component_wat(name: &str, wat: &str) -> PathBuf {
    let wasm = wat::parse_str(wat).expect("valid wat");
    write(
        name,
        &engine().precompile_component(&wasm).expect("precompile"),
    )
}

/// `tests/programs/prog.c` built for wasm32-wasi with clang-14 and precompiled, once.
fn prog() -> &'static Path {
    static PROG: OnceLock<PathBuf> = OnceLock::new();
    PROG.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/prog.c");
        let wasm = scratch().join("prog.wasm");
        let status = Command::new("clang-14")
            .args(["--target=wasm32-wasi", "-O2", "-o"])
            .arg(&wasm)
            .arg(&source)
            .status()
            .expect("run clang-14 (packages clang-14, lld-14, wasi-libc)");
        assert!(status.success(), "clang-14 failed on {}", source.display());
        let bytes = std::fs::read(&wasm).expect("read prog.wasm");
        write(
            "prog.cwasm",
            &engine().precompile_module(&bytes).expect("precompile prog"),
        )
    })
}

/// The static shim scripts/build-shim.sh put beside the other binaries (target/<profile>/, two
/// levels above this test's executable in target/<profile>/deps/), or `CAPSA_SHIM`.
fn shim() -> PathBuf {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        let path = std::env::var_os("CAPSA_SHIM")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let exe = std::env::current_exe().expect("the test's executable");
                exe.parent()
                    .and_then(Path::parent)
                    .expect("target/<profile>/deps/<test>")
                    .join("capsa-shim")
            });
        assert!(
            path.is_file(),
            "{} is missing: build it with scripts/build-shim.sh (scripts/test.sh does)",
            path.display()
        );
        path
    })
    .clone()
}

/// The shim's command for `artifact`: `--artifact-fd` (the descriptor is inherited), `options`,
/// then `-- args`; exactly `env` as environment.
fn command(artifact: &Path, options: &[&str], args: &[&str], env: &[(&str, &str)]) -> Command {
    let file = File::open(artifact).expect("open artifact");
    let fd = file.as_raw_fd();
    let mut command = Command::new(shim());
    command
        .arg("--artifact-fd")
        .arg(fd.to_string())
        .args(options)
        .arg("--")
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    // SAFETY: fcntl is async-signal-safe; the closure owns `file`, so the descriptor stays open
    // until the child execs.
    unsafe {
        command.pre_exec(move || {
            if libc::fcntl(file.as_raw_fd(), libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

fn run(artifact: &Path, options: &[&str], args: &[&str], env: &[(&str, &str)]) -> Output {
    let child = command(artifact, options, args, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn capsa-shim");
    wait(child, Duration::from_secs(30))
}

/// Waits for `child`, killing it (and failing) after `limit`.
fn wait(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("capsa-shim still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const ROOT_RO: &[&str] = &["--preopen", "/=/:ro"];
const ROOT_RW: &[&str] = &["--preopen", "/=/:rw"];

#[test]
fn args_and_env_reach_the_module_exactly() {
    let output = run(
        prog(),
        ROOT_RO,
        &["/app/prog.wasm", "echo", "two words", "--flag"],
        &[
            ("A", "1"),
            ("EMPTY", ""),
            ("PATH", "/bin"),
            ("RUST_LOG", "trace"),
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "arg /app/prog.wasm\narg echo\narg two words\narg --flag\n\
         env A=1\nenv EMPTY=\nenv PATH=/bin\nenv RUST_LOG=trace\n"
    );
    assert_eq!(stderr(&output), "");
}

#[test]
fn a_file_is_read_through_the_root_preopen() {
    let file = scratch().join("greeting.txt");
    std::fs::write(&file, "hello through /\n").expect("write");
    let path = file.to_str().expect("utf-8 path");
    let output = run(prog(), ROOT_RO, &["prog", "read", path], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "hello through /\n");
}

#[test]
fn writing_fails_on_a_read_only_preopen_and_works_on_a_writable_one() {
    let file = scratch().join("written.txt");
    let path = file.to_str().expect("utf-8 path");
    let output = run(prog(), ROOT_RO, &["prog", "write", path], &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(
        stdout(&output).contains("Read-only file system")
            || stdout(&output).contains("not permitted"),
        "{}",
        stdout(&output)
    );
    assert!(!file.exists());

    let output = run(prog(), ROOT_RW, &["prog", "write", path], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert_eq!(
        std::fs::read_to_string(&file).expect("written"),
        "written by wasm\n"
    );
}

#[test]
fn a_directory_outside_the_preopens_is_not_reachable() {
    let dir = scratch().join("only");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(scratch().join("outside.txt"), "secret").expect("write");
    let preopen = format!("/=/{}:ro", dir.display());
    let output = run(
        prog(),
        &["--preopen", &preopen],
        &["prog", "read", "/../outside.txt"],
        &[],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(!stdout(&output).contains("secret"));
}

const PROC_EXIT: &str = r#"
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $proc_exit (i32.const 3))))
"#;

#[test]
fn proc_exit_code_is_the_exit_status() {
    let output = run(&module_wat("exit3.cwasm", PROC_EXIT), &[], &["exit3"], &[]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert_eq!(stderr(&output), "");
}

#[test]
fn returning_from_start_exits_0() {
    let wat = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;
    let output = run(&module_wat("empty.cwasm", wat), &[], &["empty"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn a_trap_exits_134_with_a_backtrace() {
    let wat = r#"
(module
  (memory (export "memory") 1)
  (func $crash unreachable)
  (func $middle (call $crash))
  (func (export "_start") (call $middle)))
"#;
    let output = run(
        &module_wat("trap.cwasm", wat),
        &[],
        &["/app/trap.wasm"],
        &[],
    );
    assert_eq!(output.status.code(), Some(134));
    let err = stderr(&output);
    assert!(
        err.starts_with("capsa-shim: /app/trap.wasm: trap: "),
        "{err}"
    );
    assert!(err.contains("unreachable"), "{err}");
    assert!(err.contains("crash") && err.contains("middle"), "{err}");
}

#[test]
fn a_missing_import_exits_127_naming_it() {
    let wat = r#"
(module
  (import "env" "not_provided" (func))
  (memory (export "memory") 1)
  (func (export "_start")))
"#;
    let output = run(
        &module_wat("import.cwasm", wat),
        &[],
        &["/app/import.wasm"],
        &[],
    );
    assert_eq!(output.status.code(), Some(127));
    let err = stderr(&output);
    assert!(err.contains("/app/import.wasm"), "{err}");
    assert!(err.contains("env::not_provided"), "{err}");
}

#[test]
fn a_module_without_start_exits_127() {
    let wat = r#"(module (memory (export "memory") 1) (func (export "main")))"#;
    let output = run(&module_wat("nostart.cwasm", wat), &[], &["nostart"], &[]);
    assert_eq!(output.status.code(), Some(127));
    assert!(stderr(&output).contains("_start"), "{}", stderr(&output));
}

#[test]
fn a_corrupted_or_truncated_artifact_exits_127_clearly() {
    let good = std::fs::read(module_wat("good.cwasm", PROC_EXIT)).expect("read");
    let truncated = write("truncated.cwasm", &good[..good.len() / 2]);
    let garbage = write(
        "garbage.cwasm",
        b"\0asm\x01\0\0\0 not a precompiled artifact",
    );
    let mut flipped = good.clone();
    flipped[..4].copy_from_slice(b"XELF");
    let flipped = write("flipped.cwasm", &flipped);
    for artifact in [truncated, garbage, flipped] {
        let output = run(&artifact, &[], &["bad"], &[]);
        assert_eq!(output.status.code(), Some(127), "{}", artifact.display());
        assert!(
            stderr(&output).contains(
                "the precompiled artifact is invalid or was built for another engine configuration"
            ),
            "{}",
            stderr(&output)
        );
    }
}

#[test]
fn an_artifact_built_with_features_the_shim_disables_exits_127() {
    // Built with the default features (SIMD on); a shim told SIMD is off must refuse it, since
    // the compiled code may use SIMD instructions the engine was asked not to allow.
    let artifact = module_wat("simd.cwasm", PROC_EXIT);
    let no_simd = [
        "--wasm-feature",
        "simd=off",
        "--wasm-feature",
        "relaxed-simd=off",
    ];
    let output = run(&artifact, &no_simd, &["simd"], &[]);
    assert_eq!(output.status.code(), Some(127), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("another engine configuration"),
        "{}",
        stderr(&output)
    );
    // With the features it was built with, it runs.
    let output = run(&artifact, &[], &["simd"], &[]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
}

#[test]
fn an_artifact_built_with_fewer_features_still_runs() {
    // wasmtime accepts code compiled with a subset of the engine's features: it cannot use
    // what it was not allowed.
    let mut no_simd = Features::default();
    no_simd
        .apply("simd=off")
        .and_then(|f| f.apply("relaxed-simd=off"))
        .expect("known");
    let engine = Engine::new(&engine_config(&no_simd)).expect("engine");
    let wasm = wat::parse_str(PROC_EXIT).expect("wat");
    let artifact = write(
        "nosimd.cwasm",
        &engine.precompile_module(&wasm).expect("precompile"),
    );
    let output = run(&artifact, &[], &["nosimd"], &[]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
}

#[test]
fn a_component_artifact_given_as_a_module_exits_127() {
    let output = run(&hello_component(0), &[], &["c"], &[]);
    assert_eq!(output.status.code(), Some(127));
    assert!(
        stderr(&output).contains("expected a Module"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_bad_command_line_exits_127() {
    let output = run(
        &module_wat("usage.cwasm", PROC_EXIT),
        &["--frobnicate"],
        &["x"],
        &[],
    );
    assert_eq!(output.status.code(), Some(127));
    assert!(
        stderr(&output).contains("unknown option \"--frobnicate\""),
        "{}",
        stderr(&output)
    );
}

#[test]
fn memory_growth_past_the_limit_fails_cleanly_with_a_message() {
    let wat = r#"
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    ;; 2048 pages = 128 MiB, more than the 64 MiB limit allows: memory.grow returns -1
    (if (i32.eq (memory.grow (i32.const 2048)) (i32.const -1))
      (then (call $proc_exit (i32.const 2))))))
"#;
    let artifact = module_wat("grow.cwasm", wat);
    let output = run(
        &artifact,
        &["--memory-limit", "67108864"],
        &["/grow.wasm"],
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("/grow.wasm: out of memory"), "{err}");
    assert!(
        err.contains("memory limit 67108864 bytes, of which"),
        "{err}"
    );

    // Without a limit the same growth succeeds.
    let output = run(&artifact, &[], &["/grow.wasm"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn malloc_in_c_fails_at_the_memory_limit() {
    let output = run(
        prog(),
        &["--memory-limit", "33554432"],
        &["prog", "malloc"],
        &[],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("malloc failed"),
        "{}",
        stdout(&output)
    );
    assert!(
        stderr(&output).contains("memory limit 33554432 bytes"),
        "{}",
        stderr(&output)
    );
}

const ENDLESS: &str = r#"
(module
  (memory (export "memory") 1)
  (func (export "_start") (loop $l (br $l))))
"#;

#[test]
fn an_endless_loop_is_stopped_at_the_deadline_with_124() {
    let start = Instant::now();
    let output = run(
        &module_wat("endless.cwasm", ENDLESS),
        &["--deadline-ms", "300"],
        &["endless"],
        &[],
    );
    assert_eq!(output.status.code(), Some(124));
    assert_eq!(stderr(&output), "capsa-shim: deadline of 300 ms exceeded\n");
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_module_blocked_in_a_sleep_is_stopped_at_the_deadline() {
    let start = Instant::now();
    let output = run(prog(), &["--deadline-ms", "300"], &["prog", "sleep"], &[]);
    assert_eq!(output.status.code(), Some(124));
    assert_eq!(stderr(&output), "capsa-shim: deadline of 300 ms exceeded\n");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

/// Starts `args` on `artifact`, waits until it has started (a first line on stdout, or a fixed
/// time for silent programs), sends `signal` and returns how it ended and how long that took.
fn signalled(artifact: &Path, args: &[&str], signal: libc::c_int) -> (Output, Duration) {
    let child = command(artifact, &[], args, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    // SAFETY: kill(2) on our own child's pid, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
    let output = wait(child, Duration::from_secs(10));
    (output, sent.elapsed())
}

#[test]
fn sigterm_stops_a_running_module_with_143() {
    let (output, took) = signalled(&module_wat("term.cwasm", ENDLESS), &["x"], libc::SIGTERM);
    assert_eq!(output.status.code(), Some(143), "{:?}", output.status);
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn sigint_stops_a_running_module_with_130() {
    let (output, _) = signalled(&module_wat("int.cwasm", ENDLESS), &["x"], libc::SIGINT);
    assert_eq!(output.status.code(), Some(130), "{:?}", output.status);
}

#[test]
fn sigterm_stops_a_module_blocked_in_a_sleep() {
    let (output, took) = signalled(prog(), &["prog", "sleep"], libc::SIGTERM);
    assert_eq!(output.status.code(), Some(143), "{:?}", output.status);
    assert_eq!(output.status.signal(), None);
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(stdout(&output), "sleeping\n");
}

/// A minimal WASI preview 2 command written directly in the component model's text format: it
/// imports `wasi:cli/stdout` and `wasi:io/streams`, prints a line with
/// `blocking-write-and-flush`, and returns `ok` from `wasi:cli/run` when `fail` is 0 (`err`
/// otherwise).
fn hello_component(fail: i32) -> PathBuf {
    let wat = include_str!("programs/hello-component.wat").replace(
        "(i32.const 0) ;; the result",
        &format!("(i32.const {fail}) ;; the result"),
    );
    component_wat(&format!("hello-component-{fail}.cwasm"), &wat)
}

#[test]
fn a_preview2_component_prints_and_exits_0() {
    let output = run(&hello_component(0), &["--component"], &["/app/c.wasm"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "hello from a component\n");
}

#[test]
fn a_component_returning_its_error_exits_1() {
    let output = run(&hello_component(1), &["--component"], &["/app/c.wasm"], &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(stdout(&output), "hello from a component\n");
}

#[test]
fn a_module_artifact_given_as_a_component_exits_127() {
    let output = run(
        &module_wat("mod-as-comp.cwasm", PROC_EXIT),
        &["--component"],
        &["m"],
        &[],
    );
    assert_eq!(output.status.code(), Some(127));
    assert!(
        stderr(&output).contains("expected a Component"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_artifact_on_a_noexec_filesystem_is_read_instead_of_mapped() {
    // wasmtime maps a precompiled file executable, which a noexec mount forbids (the host's
    // state directory may be on /run, often noexec): the shim then reads the bytes.
    let dir = scratch().join("noexec");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "noexec,size=16m", "capsa-test"])
        .arg(&dir)
        .status()
        .expect("run mount");
    assert!(mounted.success(), "mount tmpfs (the tests run as root)");
    let artifact = dir.join("exit3.cwasm");
    std::fs::copy(module_wat("noexec-src.cwasm", PROC_EXIT), &artifact).expect("copy");
    let output = run(&artifact, &[], &["noexec"], &[]);
    let _ = Command::new("umount").arg(&dir).status();
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
}
