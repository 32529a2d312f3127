//! Child processes, asyncio's subprocess demo: runs `ls -l` (or the command given as arguments)
//! and, at the same time, five `sleep 1` children; prints each exit status. The whole takes about
//! one second, not five: the loop waits for every child at once.
//!
//! ```text
//! cargo run --example subprocess
//! cargo run --example subprocess -- uname -a
//! RINGLOOP_BACKEND=epoll cargo run --example subprocess
//! ```

use std::process::ExitCode;
use std::time::Instant;

use ringloop::JoinSet;
use ringloop::process::Command;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (program, rest) = match args.split_first() {
        Some((p, rest)) => (p.clone(), rest.to_vec()),
        None => ("ls".to_owned(), vec!["-l".to_owned()]),
    };
    let mut lp = match ringloop::EventLoop::new() {
        Ok(lp) => lp,
        Err(e) => {
            eprintln!("subprocess: cannot build an event loop: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("subprocess: backend {}", lp.backend());
    let ok = lp.run_until_complete(async move {
        let start = Instant::now();
        let mut group = JoinSet::new();
        let label = format!("{program} {}", rest.join(" "));
        group.spawn(async move {
            let out = Command::new(&program).args(&rest).output().await?;
            print!("{}", String::from_utf8_lossy(&out.stdout));
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
            Ok::<_, std::io::Error>((label, out.status))
        });
        for i in 1..=5 {
            group.spawn(async move {
                let status = Command::new("sleep").arg("1").status().await?;
                Ok((format!("sleep 1 (#{i})"), status))
            });
        }
        let mut ok = true;
        while let Some(res) = group.join_next().await {
            match res {
                Ok(Ok((label, status))) => {
                    println!("{label}: {status}");
                    ok &= status.success();
                }
                Ok(Err(e)) => {
                    eprintln!("subprocess: {e}");
                    ok = false;
                }
                Err(e) => {
                    eprintln!("subprocess: a task failed: {e}");
                    ok = false;
                }
            }
        }
        println!(
            "all children done in {:.2} s",
            start.elapsed().as_secs_f64()
        );
        ok
    });
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
