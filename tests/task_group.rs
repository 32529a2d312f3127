//! `TaskGroup`, asyncio's semantics, on both backends: the first failure (an `Err` or a panic)
//! cancels the other members, `join` waits for every member (the cancelled ones' futures are
//! dropped when it returns) and reports every error, first failure first. `JoinSet` (independent
//! members) is tested in toolbox.rs.

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use ringloop::{MemberError, TaskGroup, yield_now};

/// Yields `n` times, then returns `v`.
async fn after_yields<T>(n: usize, v: T) -> T {
    for _ in 0..n {
        yield_now().await;
    }
    v
}

/// Sets its flag when dropped.
struct DropFlag(Rc<Cell<bool>>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

/// A member that waits forever and sets `flag` when its future is dropped.
fn forever(flag: &Rc<Cell<bool>>) -> impl Future<Output = Result<u32, String>> + 'static {
    let guard = DropFlag(flag.clone());
    async move {
        let _guard = guard;
        std::future::pending::<()>().await;
        Ok(0)
    }
}

/// `group.join()`, failing the test (not hanging it) if the members are never cancelled.
async fn join<T: 'static, E: 'static>(
    group: TaskGroup<T, E>,
) -> Result<Vec<T>, ringloop::GroupError<E>> {
    ringloop::time::timeout(Duration::from_secs(10), group.join())
        .await
        .expect("join waited 10 s: the members were not cancelled")
}

fn flags(n: usize) -> Vec<Rc<Cell<bool>>> {
    (0..n).map(|_| Rc::new(Cell::new(false))).collect()
}

both_backends! {
    fn outputs_come_in_spawn_order(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let mut group = TaskGroup::new();
            for (yields, v) in [(30, 'c'), (10, 'a'), (20, 'b'), (0, 'z')] {
                group.spawn(async move { Ok::<_, String>(after_yields(yields, v).await) });
            }
            assert_eq!(group.len(), 4);
            assert_eq!(join(group).await.unwrap(), ['c', 'a', 'b', 'z']);
        });
        assert_eq!(lp.tasks().len(), 0);
    }

    fn an_empty_group_joins_at_once(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let group = TaskGroup::<(), ()>::new();
            assert!(group.is_empty());
            assert_eq!(join(group).await.unwrap(), Vec::<()>::new());
        });
    }

    /// The old `TaskGroup` (now `JoinSet`) let the others run on; here an `Err` cancels them and
    /// `join` returns only once their futures are dropped.
    fn an_err_cancels_the_others_and_join_waits_for_them(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let dropped = flags(4);
            let mut group = TaskGroup::new();
            for f in &dropped {
                group.spawn(forever(f));
            }
            group.spawn(async { Err(after_yields(3, "refused".to_string()).await) });
            let err = join(group).await.unwrap_err();
            // No yield between `join` and these checks: `join` waited for the drops.
            assert!(dropped.iter().all(|f| f.get()), "join returned before a member was dropped");
            assert_eq!(err.cancelled(), 4);
            assert_eq!(err.errors().len(), 1);
            assert!(matches!(&err.errors()[0], MemberError::Failed(e) if e == "refused"), "{err:?}");
            assert!(err.to_string().contains("refused"), "{err}");
        });
        assert_eq!(lp.tasks().len(), 0);
    }

    fn a_panic_cancels_the_others(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let dropped = flags(3);
            let mut group = TaskGroup::new();
            for f in &dropped {
                group.spawn(forever(f));
            }
            group.spawn(async {
                yield_now().await;
                panic!("member two broke");
            });
            let err = join(group).await.unwrap_err();
            assert!(dropped.iter().all(|f| f.get()), "join returned before a member was dropped");
            assert_eq!((err.errors().len(), err.cancelled()), (1, 3));
            assert!(err.errors()[0].is_panic());
            assert!(err.to_string().contains("member two broke"), "{err}");
        });
        assert_eq!(lp.tasks().len(), 0);
    }

    /// A member whose cleanup panics while it is being cancelled is a failure too (asyncio
    /// collects the exceptions of cancelled tasks): both errors are reported, first failure first.
    fn every_failure_is_reported_first_failure_first(lp: &mut EventLoop) {
        struct PanicOnDrop;
        impl Drop for PanicOnDrop {
            fn drop(&mut self) {
                panic!("cleanup broke");
            }
        }
        lp.run_until_complete(async {
            let mut group = TaskGroup::new();
            group.spawn(async {
                let _p = PanicOnDrop;
                std::future::pending::<()>().await;
                Ok(())
            });
            group.spawn(async { Err(after_yields(2, 7u8).await) });
            let err = join(group).await.unwrap_err();
            let errors = err.into_errors();
            assert_eq!(errors.len(), 2, "{errors:?}");
            assert!(matches!(errors[0], MemberError::Failed(7)), "{errors:?}");
            assert!(errors[1].is_panic(), "{errors:?}");
        });
        assert_eq!(lp.tasks().len(), 0);
    }

    fn cancel_cancels_every_member(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let dropped = flags(5);
            let mut group = TaskGroup::new();
            for f in &dropped {
                group.spawn(forever(f));
            }
            yield_now().await;
            group.cancel();
            assert!(group.is_cancelling());
            let err = join(group).await.unwrap_err();
            assert!(dropped.iter().all(|f| f.get()));
            assert_eq!((err.errors().len(), err.cancelled()), (0, 5));
        });
    }

    /// A member spawned into a group that is cancelling never runs (asyncio refuses it).
    fn a_member_spawned_after_a_failure_never_runs(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let ran = Rc::new(Cell::new(false));
            let mut group = TaskGroup::new();
            group.spawn(async { Err::<(), _>("no") });
            yield_now().await; // the failing member ran
            assert!(group.is_cancelling());
            let r = ran.clone();
            group.spawn(async move {
                r.set(true);
                Ok(())
            });
            let err = join(group).await.unwrap_err();
            assert!(!ran.get(), "a member ran in a group that was cancelling");
            assert_eq!((err.errors().len(), err.cancelled()), (1, 1));
        });
    }

    /// Members blocked on I/O and timers are cancelled as dropped I/O futures are: `join`
    /// returns promptly, and the loop closes with nothing left.
    fn members_blocked_on_io_are_cancelled(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let (a, b) = common::tcp_pair().await;
            let mut group = TaskGroup::new();
            group.spawn(async move {
                let (res, _) = a.read(vec![0u8; 64]).await;
                res.map(|_| ()).map_err(|e| e.to_string())
            });
            group.spawn(async {
                ringloop::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            });
            group.spawn(async { Err("stop".to_string()) });
            let err = join(group).await.unwrap_err();
            assert_eq!(err.cancelled(), 2);
            // The read's stream was dropped with its member: the peer sees end of stream.
            let (n, _) = b.read(vec![0u8; 8]).await;
            assert_eq!(n.unwrap(), 0);
        });
        assert_eq!(lp.tasks().len(), 0);
    }

    fn dropping_a_group_aborts_its_members(lp: &mut EventLoop) {
        lp.run_until_complete(async {
            let dropped = flags(3);
            let mut group = TaskGroup::new();
            for f in &dropped {
                group.spawn(forever(f));
            }
            yield_now().await;
            drop(group);
            for _ in 0..3 {
                yield_now().await;
            }
            assert!(dropped.iter().all(|f| f.get()), "a member of a dropped group still runs");
        });
    }
}
