//! Group commit of attestation rounds (ARCHITECTURE.md, "Binding", "Version 2"): callers
//! that ask while a round (one TEE report, one TPM quote) is in flight queue for the next
//! one, which binds the Merkle root of all their nonces; each gets the round's shared
//! output and its own inclusion proof.
//!
//! A round starts as soon as the previous one ends and someone waits, never on a timer,
//! so a lone caller pays exactly one round. A round answers at most `max_size` callers
//! (the rest wait for the next); at most `max_waiting` callers queue, and one more is
//! refused at once ([`JoinError::Busy`], a 503 with `Retry-After`). Rounds run in a task
//! of their own, so a caller that goes away does not cancel a round others wait for.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};

use attest::batch::{Batch, Hash, Tree};
use attest::binding::Nonce;
use tokio::sync::oneshot;

use crate::config::batching::BatchSettings;

/// What a round does with the root it binds: the hardware part of an attestation.
pub trait Round: Send + Sync + 'static {
    /// What every caller of the round shares.
    type Output: Send + Sync + 'static;
    /// Why a round failed (every caller of it gets the same error).
    type Error: Send + Sync + 'static;
    /// Runs one round that binds `root`.
    fn run(&self, root: Hash) -> impl Future<Output = Result<Self::Output, Self::Error>> + Send;
}

/// Why a caller got no share of a round.
#[derive(Debug, thiserror::Error)]
pub enum JoinError<E> {
    /// `max_waiting` callers already wait.
    #[error(
        "{waiting} attestation requests are already waiting for the TPM and TEE; retry shortly"
    )]
    Busy {
        /// How many wait (the configured `batch_max_waiting`).
        waiting: usize,
    },
    /// The round failed; every caller of it gets this error.
    #[error("{0}")]
    Round(Arc<E>),
    /// The round's task ended without answering (it panicked: a defect).
    #[error("internal: the attestation round ended without an answer")]
    Lost,
}

/// One caller's share of a round.
#[derive(Debug)]
pub struct Share<T> {
    /// The round's output, shared by its callers.
    pub round: Arc<T>,
    /// The caller's place in the round's tree.
    pub batch: Batch,
}

type Reply<R> =
    oneshot::Sender<Result<Share<<R as Round>::Output>, JoinError<<R as Round>::Error>>>;

struct Queue<R: Round> {
    running: bool,
    waiting: VecDeque<(Nonce, Reply<R>)>,
}

/// Counts of rounds, for `/metrics`.
#[derive(Debug, Default)]
pub struct BatchCounts {
    /// Rounds run.
    pub rounds: std::sync::atomic::AtomicU64,
    /// Callers refused because `max_waiting` were queued.
    pub refused: std::sync::atomic::AtomicU64,
}

/// Queues callers and runs rounds; see the module documentation.
pub struct Batcher<R: Round> {
    round: R,
    settings: BatchSettings,
    queue: Mutex<Queue<R>>,
    /// Rounds run and callers refused.
    pub counts: BatchCounts,
}

impl<R: Round> std::fmt::Debug for Batcher<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<R: Round> Batcher<R> {
    /// A batcher that runs `round` under `settings`.
    pub fn new(round: R, settings: BatchSettings) -> Arc<Batcher<R>> {
        Arc::new(Batcher {
            round,
            settings,
            queue: Mutex::new(Queue {
                running: false,
                waiting: VecDeque::new(),
            }),
            counts: BatchCounts::default(),
        })
    }

    /// The round this batcher runs.
    pub fn round(&self) -> &R {
        &self.round
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue<R>> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Joins the next round with `nonce` and waits for its answer.
    pub async fn join(
        self: &Arc<Self>,
        nonce: Nonce,
    ) -> Result<Share<R::Output>, JoinError<R::Error>> {
        let (tx, rx) = oneshot::channel();
        {
            let mut q = self.queue();
            if q.waiting.len() >= self.settings.max_waiting {
                self.counts
                    .refused
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Err(JoinError::Busy {
                    waiting: self.settings.max_waiting,
                });
            }
            q.waiting.push_back((nonce, tx));
            if !q.running {
                q.running = true;
                tokio::spawn(self.clone().drive());
            }
        }
        rx.await.unwrap_or(Err(JoinError::Lost))
    }

    /// Runs rounds while callers wait, then stops.
    async fn drive(self: Arc<Self>) {
        // Should a round panic, the next caller starts a new driver; those of the lost
        // round see `Lost` as their senders drop.
        struct Stop<'a, R: Round>(&'a Batcher<R>);
        impl<R: Round> Drop for Stop<'_, R> {
            fn drop(&mut self) {
                // Only when unwinding: on a normal return the loop has already cleared the
                // flag under the lock, and a new driver may be running by now.
                if std::thread::panicking() {
                    self.0.queue().running = false;
                }
            }
        }
        let _stop = Stop(&self);
        loop {
            let callers: Vec<(Nonce, Reply<R>)> = {
                let mut q = self.queue();
                let n = q.waiting.len().min(self.settings.max_size);
                if n == 0 {
                    q.running = false;
                    return;
                }
                q.waiting.drain(..n).collect()
            };
            let nonces: Vec<Nonce> = callers.iter().map(|(n, _)| *n).collect();
            // 1..=max_size nonces, and config bounds max_size to MAX_BATCH_SIZE.
            let Some(tree) = Tree::new(&nonces) else {
                continue;
            };
            self.counts
                .rounds
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match self.round.run(tree.root()).await {
                Ok(output) => {
                    let output = Arc::new(output);
                    for ((_, reply), index) in callers.into_iter().zip(0..) {
                        if let Some(batch) = tree.proof(index) {
                            // A caller that went away does not matter to the others.
                            let _ = reply.send(Ok(Share {
                                round: output.clone(),
                                batch,
                            }));
                        }
                    }
                }
                Err(e) => {
                    let e = Arc::new(e);
                    for (_, reply) in callers {
                        let _ = reply.send(Err(JoinError::Round(e.clone())));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::Semaphore;

    /// A round that waits for a permit, so the test decides when each round ends.
    struct Gate {
        permits: Arc<Semaphore>,
    }

    impl Round for Gate {
        type Output = Hash;
        type Error = String;
        async fn run(&self, root: Hash) -> Result<Hash, String> {
            let permit = self.permits.acquire().await.map_err(|e| e.to_string())?;
            permit.forget();
            Ok(root)
        }
    }

    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn callers_that_arrive_during_a_round_share_the_next_with_their_own_proofs() {
        let permits = Arc::new(Semaphore::new(0));
        let settings = BatchSettings {
            max_size: 3,
            max_waiting: 4,
        };
        let b = Batcher::new(
            Gate {
                permits: permits.clone(),
            },
            settings,
        );
        let nonce = |i: u8| Nonce([i; 32]);
        // The first caller starts a round alone.
        let first = tokio::spawn({
            let b = b.clone();
            async move { b.join(nonce(0)).await }
        });
        settle().await;
        // Four more arrive while it runs: three fit the next round, one the round after.
        let later: Vec<_> = (1..=4)
            .map(|i| {
                let b = b.clone();
                tokio::spawn(async move { b.join(nonce(i)).await })
            })
            .collect();
        settle().await;
        // A fifth waiter is one too many.
        assert!(matches!(
            b.join(nonce(9)).await,
            Err(JoinError::Busy { waiting: 4 })
        ));
        permits.add_permits(3);
        let first = first.await.unwrap().unwrap();
        assert_eq!(first.batch, Batch::single());
        assert_eq!(first.batch.root_for(&nonce(0)), Ok(*first.round));
        let mut sizes = Vec::new();
        for (i, h) in (1..=4).zip(later) {
            let share = h.await.unwrap().unwrap();
            assert_eq!(
                share.batch.root_for(&nonce(i)),
                Ok(*share.round),
                "caller {i}"
            );
            sizes.push(share.batch.size);
        }
        assert_eq!(sizes, [3, 3, 3, 1]);
        assert_eq!(
            b.counts.rounds.load(std::sync::atomic::Ordering::Relaxed),
            3
        );
    }

    struct Failing;
    impl Round for Failing {
        type Output = ();
        type Error = String;
        async fn run(&self, _root: Hash) -> Result<(), String> {
            Err("the TPM is gone".into())
        }
    }

    #[tokio::test]
    async fn a_failed_round_fails_its_callers_and_the_next_caller_starts_anew() {
        let b = Batcher::new(Failing, BatchSettings::default());
        let e = b.join(Nonce([1; 32])).await.unwrap_err();
        assert_eq!(e.to_string(), "the TPM is gone");
        assert!(b.join(Nonce([2; 32])).await.is_err());
        assert_eq!(
            b.counts.rounds.load(std::sync::atomic::Ordering::Relaxed),
            2
        );
    }
}
