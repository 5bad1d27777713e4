//! `probe`: runs the checks where the datapath lives and prints JSON lines on stdout.
//! Usually started by `cargo xtask conformance` through a target, not by hand.

#[cfg(target_os = "linux")]
fn main() -> std::process::ExitCode {
    linux::main()
}

#[cfg(not(target_os = "linux"))]
fn main() -> std::process::ExitCode {
    eprintln!("probe: runs on Linux only (it creates network namespaces and loads eBPF programs)");
    std::process::ExitCode::from(2)
}

#[cfg(target_os = "linux")]
mod linux {
    use clap::{Parser, Subcommand};
    use conformance_probes::checks::Fault;
    use conformance_probes::runner::{self, RunOptions};
    use std::collections::BTreeMap;
    use std::process::ExitCode;

    #[derive(Parser)]
    #[command(
        name = "probe",
        version,
        about = "Runs cilium-conformance checks here and prints JSON lines (facts, plan, observations, done)."
    )]
    struct Cli {
        #[command(subcommand)]
        command: Option<Command>,
        #[command(flatten)]
        run: RunArgs,
    }

    #[derive(Subcommand)]
    enum Command {
        /// Run checks (the default).
        Run(RunArgs),
        /// Print the facts line only.
        Facts,
        /// List check ids and variants.
        List,
        /// Act as a `vm` target guest's init: mount, load modules, run the checks
        /// its /conformance/guest.json names, power off. Started by the kernel only.
        #[command(hide = true)]
        GuestInit,
        /// Serve the echo for the cluster target's pod checks: answer each TCP
        /// line or UDP datagram (a token) with one JSON line naming this server
        /// and the peer it saw. Runs unprivileged, until killed.
        Echo(EchoArgs),
        /// Run a cluster client pod's checks (a ConnectPlan) and print one
        /// observation line per check, in plan order. Runs unprivileged.
        Connect(ConnectArgs),
        /// Watch this pod's own interface for the cluster target's
        /// stack-delivery check: attach the probe's hook on its ingress, bind a
        /// UDP port, and account for each sender's burst hop by hop (hook, IP
        /// and UDP counters, socket). Needs CAP_BPF, CAP_NET_ADMIN and
        /// CAP_PERFMON; runs until killed.
        Observe(ObserveArgs),
    }

    #[derive(clap::Args)]
    struct ObserveArgs {
        /// This observer's name in reports (its pod).
        #[arg(long)]
        name: String,
        /// The interface to watch (the pod's own).
        #[arg(long, default_value = "eth0")]
        device: String,
        /// The UDP port the bursts go to.
        #[arg(long, value_name = "PORT")]
        udp: u16,
        /// The TCP port senders open their sessions on.
        #[arg(long, value_name = "PORT")]
        session: u16,
        /// How to attach the hook: auto (TCX where the kernel has it, else legacy tc), tcx, legacy.
        #[arg(long, default_value = "auto", value_parser = ["auto", "tcx", "legacy"])]
        attach: String,
    }

    #[derive(clap::Args)]
    #[command(group = clap::ArgGroup::new("ports").required(true).multiple(true).args(["tcp", "udp"]))]
    struct EchoArgs {
        /// This server's name in every reply (its pod, or the node).
        #[arg(long)]
        name: String,
        /// Serve TCP on this port (0.0.0.0).
        #[arg(long, value_name = "PORT")]
        tcp: Option<u16>,
        /// Serve UDP on this port (0.0.0.0).
        #[arg(long, value_name = "PORT")]
        udp: Option<u16>,
    }

    #[derive(clap::Args)]
    #[command(group = clap::ArgGroup::new("source").required(true).args(["plan", "plan_file"]))]
    struct ConnectArgs {
        /// The plan, as ConnectPlan JSON.
        #[arg(long, value_name = "JSON")]
        plan: Option<String>,
        /// Read the plan from this file instead.
        #[arg(long, value_name = "PATH")]
        plan_file: Option<std::path::PathBuf>,
        /// Ask this resolver instead of /etc/resolv.conf's first nameserver, port 53.
        #[arg(long, value_name = "IP:PORT")]
        resolver: Option<std::net::SocketAddr>,
    }

    #[derive(clap::Args, Default)]
    struct RunArgs {
        /// Check to run, as `id` or `id[variant]`; repeat for more. Default: all.
        #[arg(long = "check", value_name = "ID")]
        checks: Vec<String>,
        /// Break a check's datapath on purpose, as `id=drop` or `id=no-route`
        /// (for testing the suite: that check must turn into a regression).
        #[arg(long = "fault", value_name = "ID=KIND")]
        faults: Vec<String>,
        /// Run id for object names and the report; default: random.
        #[arg(long)]
        run_id: Option<String>,
        /// For every observation that does not pass, add `evidence.triage`: each
        /// namespace's links, addresses, routes, neighbours, qdiscs and BPF programs,
        /// cgroup programs of the probe's cgroup, and the kernel's drop reasons
        /// (skb:kfree_skb) while the check ran.
        #[arg(long)]
        triage: bool,
        /// Checks to run at once (each in namespaces of its own); default: twice
        /// the CPUs, 2 to 8. With --triage, one at a time.
        #[arg(long, value_name = "N")]
        jobs: Option<usize>,
    }

    fn run_id() -> String {
        let mut bytes = [0u8; 4];
        if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
            let _ = std::io::Read::read_exact(&mut f, &mut bytes);
        }
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn parse_faults(raw: &[String]) -> Result<BTreeMap<String, Fault>, String> {
        raw.iter()
            .map(|f| {
                let (id, kind) = f
                    .split_once('=')
                    .ok_or_else(|| format!("--fault {f}: want ID=KIND"))?;
                Ok((
                    id.to_string(),
                    kind.parse::<Fault>()
                        .map_err(|e| format!("--fault {f}: {e}"))?,
                ))
            })
            .collect()
    }

    /// The write end of the pipe the signal handler wakes the terminator with.
    static WAKE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

    /// SIGTERM or SIGINT: only tells the terminator thread (a write to a pipe is
    /// async-signal-safe), so whatever the interrupted thread holds open is closed
    /// as it carries on.
    extern "C" fn on_signal(signal: libc::c_int) {
        let byte = signal as u8;
        let fd = WAKE.load(std::sync::atomic::Ordering::SeqCst);
        // SAFETY: write(2) of one byte from a live buffer to our own pipe.
        unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    }

    /// On SIGTERM or SIGINT the terminator undoes what would outlive the process
    /// (triage's tracing instance, socket-LB's cgroups; namespaces, devices and
    /// programs die with it anyway) and exits 128 + the signal. Installed explicitly because as a
    /// container's pid 1 the probe would otherwise ignore SIGTERM and wait for
    /// Docker's SIGKILL.
    fn handle_terminate() {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills the two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return;
        }
        WAKE.store(fds[1], std::sync::atomic::Ordering::SeqCst);
        let read_end = fds[0];
        std::thread::spawn(move || {
            let mut byte = 0u8;
            // SAFETY: read(2) of one byte into a live buffer from our own pipe.
            while unsafe { libc::read(read_end, (&mut byte as *mut u8).cast(), 1) } != 1 {}
            conformance_probes::triage::on_terminate();
            conformance_probes::cgroup::on_terminate();
            // SAFETY: _exit ends the process without running other threads' code.
            unsafe { libc::_exit(128 + i32::from(byte)) }
        });
        for signal in [libc::SIGTERM, libc::SIGINT] {
            // SAFETY: the handler only writes to a pipe.
            unsafe {
                libc::signal(signal, on_signal as *const () as libc::sighandler_t);
            }
        }
    }

    pub fn main() -> ExitCode {
        handle_terminate();
        let cli = Cli::parse();
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let args = match cli.command {
            Some(Command::List) => {
                for spec in conformance_contract::CATALOGUE {
                    println!("{} [{}]  {}", spec.id, spec.variants.join(", "), spec.title);
                }
                return ExitCode::SUCCESS;
            }
            Some(Command::Facts) => {
                let facts = conformance_probes::facts::gather(
                    conformance_probes::objects::HOOK,
                    conformance_probes::objects::HELPER_PROBE,
                );
                println!(
                    "{}",
                    serde_json::to_string_pretty(&facts).expect("facts serialize")
                );
                return ExitCode::SUCCESS;
            }
            Some(Command::GuestInit) => return guest_init(),
            Some(Command::Echo(args)) => return echo(&args),
            Some(Command::Connect(args)) => return connect(&args, &mut out),
            Some(Command::Observe(args)) => return observe(&args),
            Some(Command::Run(args)) => args,
            None => cli.run,
        };
        ExitCode::from(run(args, &mut out))
    }

    /// `probe echo`: serves until killed; 2 when it cannot bind.
    fn echo(args: &EchoArgs) -> ExitCode {
        use conformance_probes::pods::echo::Echo;
        let any = std::net::IpAddr::from(std::net::Ipv4Addr::UNSPECIFIED);
        match Echo::bind(&args.name, any, args.tcp, args.udp) {
            Ok(echo) => {
                eprintln!("{}", echo.banner());
                echo.serve()
            }
            Err(e) => {
                eprintln!("error: echo: {e}");
                ExitCode::from(2)
            }
        }
    }

    /// `probe observe`: serves until killed; 2 when it cannot bind its ports.
    /// A hook that cannot be attached is reported to every session instead.
    fn observe(args: &ObserveArgs) -> ExitCode {
        use conformance_probes::hooks::AttachMode;
        use conformance_probes::pods::observe::{AttachChoice, Observer};
        let attach = match AttachMode::from_variant(&args.attach) {
            Some(mode) => AttachChoice::Only(mode),
            None => AttachChoice::Auto,
        };
        match Observer::start(&args.name, &args.device, args.udp, args.session, attach) {
            Ok(observer) => {
                eprintln!("{}", observer.banner());
                observer.serve()
            }
            Err(e) => {
                eprintln!("error: observe: {e}");
                ExitCode::from(2)
            }
        }
    }

    /// `probe connect`: 0 once every check's line is printed (whatever the
    /// outcomes), 2 for a plan that cannot be read.
    fn connect(args: &ConnectArgs, out: &mut impl std::io::Write) -> ExitCode {
        use conformance_probes::pods::connect;
        let json = match (&args.plan, &args.plan_file) {
            (Some(json), _) => json.clone(),
            (None, Some(path)) => match std::fs::read_to_string(path) {
                Ok(json) => json,
                Err(e) => {
                    eprintln!("error: --plan-file {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            },
            (None, None) => unreachable!("clap requires --plan or --plan-file"),
        };
        let plan = match connect::parse_plan(&json) {
            Ok(plan) => plan,
            Err(e) => {
                eprintln!("error: plan: {e}");
                return ExitCode::from(2);
            }
        };
        let opts = connect::Options {
            resolver: args.resolver,
            ..connect::Options::default()
        };
        for observation in connect::run(&plan, &opts) {
            let line = conformance_contract::Line::Observation(observation).to_json();
            if writeln!(out, "{line}").is_err() {
                return ExitCode::from(3);
            }
        }
        if out.flush().is_err() {
            return ExitCode::from(3);
        }
        ExitCode::SUCCESS
    }

    /// The guest's init: its run's arguments come from the target's config file.
    fn guest_init() -> ExitCode {
        use conformance_probes::guest;
        let (config, mut port) = match guest::prepare() {
            Ok(ready) => ready,
            Err(e) => {
                guest::error(&e);
                guest::finish(3, None);
            }
        };
        let argv = std::iter::once("probe".to_string()).chain(config.args.iter().cloned());
        let args = match Cli::try_parse_from(argv) {
            Ok(Cli {
                command: Some(Command::Run(args)),
                ..
            }) => args,
            Ok(_) => {
                guest::error("guest.json: args must start with `run`");
                guest::finish(2, Some(port));
            }
            Err(e) => {
                guest::error(&format!("guest.json args: {}", e.to_string().trim()));
                guest::finish(2, Some(port));
            }
        };
        let code = run(args, &mut port);
        guest::finish(code, Some(port))
    }

    /// The run's exit code: 0, 2 for bad arguments or privileges, 3 when it failed.
    fn run(args: RunArgs, out: &mut impl std::io::Write) -> u8 {
        let faults = match parse_faults(&args.faults) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("probe: {e}");
                return 2;
            }
        };
        if let Err(e) = runner::plan(&args.checks) {
            eprintln!("probe: {e}");
            return 2;
        }
        if !nix::unistd::geteuid().is_root() {
            eprintln!(
                "probe: needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN: it creates network namespaces and loads eBPF programs)"
            );
            return 2;
        }
        let opts = RunOptions {
            run_id: args.run_id.unwrap_or_else(run_id),
            select: args.checks,
            faults,
            triage: args.triage,
            jobs: args.jobs.unwrap_or(0),
        };
        match runner::run(&opts, out) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("probe: {e:#}");
                3
            }
        }
    }
}
