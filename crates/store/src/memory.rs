//! Stores that keep everything in memory.

use crate::model::Batch;
use crate::state::State;
use crate::{Store, StoreError};

/// Applies every batch to an in-memory [`State`] and nothing more: no durability across a
/// process restart. Used by `memory` durability and by tests.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: State,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// The state as committed so far.
    pub fn state(&self) -> &State {
        &self.state
    }
}

impl Store for MemoryStore {
    fn load(&mut self) -> Result<State, StoreError> {
        Ok(self.state.clone())
    }

    fn commit(&mut self, batches: &[Batch]) -> Result<(), StoreError> {
        for b in batches {
            self.state.apply_batch(b)?;
        }
        Ok(())
    }
}

/// A store for crash simulation: commits are durable, and a simulated crash
/// ([`FaultyStore::crash`]) forgets every batch that was handed over but whose commit had not
/// returned. [`FaultyStore::fail_next`] makes the next commit fail as a crashed disk would.
#[derive(Debug, Default)]
pub struct FaultyStore {
    durable: State,
    fail_next: bool,
    commits: u64,
}

impl FaultyStore {
    /// An empty store.
    pub fn new() -> FaultyStore {
        FaultyStore::default()
    }

    /// The next commit fails with [`StoreError::Crashed`] and makes nothing durable.
    pub fn fail_next(&mut self) {
        self.fail_next = true;
    }

    /// Simulates a crash: the store keeps exactly what was durable.
    pub fn crash(&mut self) -> State {
        self.fail_next = false;
        self.durable.clone()
    }

    /// The durable state.
    pub fn durable(&self) -> &State {
        &self.durable
    }

    /// How many commits succeeded.
    pub fn commits(&self) -> u64 {
        self.commits
    }
}

impl Store for FaultyStore {
    fn load(&mut self) -> Result<State, StoreError> {
        Ok(self.durable.clone())
    }

    fn commit(&mut self, batches: &[Batch]) -> Result<(), StoreError> {
        if std::mem::take(&mut self.fail_next) {
            return Err(StoreError::Crashed);
        }
        let mut next = self.durable.clone();
        for b in batches {
            next.apply_batch(b)?;
        }
        self.durable = next;
        self.commits += 1;
        Ok(())
    }
}
