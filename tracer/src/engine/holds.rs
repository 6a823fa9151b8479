//! The holds of one folio (or page), oldest first, stored for the common case: one hold inline
//! (a small page pinned once: no allocation of its own), more on the heap. Memory per
//! outstanding pinned page is a benchmark target (`cargo xtask bench ledger`).

use std::collections::VecDeque;

#[derive(Clone, Debug)]
pub(super) enum HoldQueue<T> {
    One(T),
    /// Empty, or more than one.
    Many(VecDeque<T>),
}

impl<T> Default for HoldQueue<T> {
    fn default() -> Self {
        HoldQueue::Many(VecDeque::new())
    }
}

impl<T> HoldQueue<T> {
    pub fn push_back(&mut self, item: T) {
        match self {
            HoldQueue::Many(q) if q.is_empty() => *self = HoldQueue::One(item),
            HoldQueue::Many(q) => q.push_back(item),
            HoldQueue::One(_) => {
                let HoldQueue::One(first) = std::mem::take(self) else { unreachable!() };
                *self = HoldQueue::Many(VecDeque::from([first, item]));
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, HoldQueue::Many(q) if q.is_empty())
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        let (a, b): (&[T], &[T]) = match self {
            HoldQueue::One(h) => (std::slice::from_ref(h), &[]),
            HoldQueue::Many(q) => q.as_slices(),
        };
        a.iter().chain(b)
    }

    pub fn position(&self, pred: impl FnMut(&T) -> bool) -> Option<usize> {
        match self {
            HoldQueue::One(h) => {
                let mut pred = pred;
                pred(h).then_some(0)
            }
            HoldQueue::Many(q) => q.iter().position(pred),
        }
    }

    pub fn get_mut(&mut self, at: usize) -> Option<&mut T> {
        match self {
            HoldQueue::One(h) => (at == 0).then_some(h),
            HoldQueue::Many(q) => q.get_mut(at),
        }
    }

    /// Takes the item at `at` (None past the end).
    pub fn remove(&mut self, at: usize) -> Option<T> {
        match self {
            HoldQueue::One(_) if at == 0 => match std::mem::take(self) {
                HoldQueue::One(h) => Some(h),
                HoldQueue::Many(_) => None,
            },
            HoldQueue::One(_) => None,
            HoldQueue::Many(q) => {
                let item = q.remove(at);
                if q.len() == 1 {
                    let last = q.pop_front().expect("one item");
                    *self = HoldQueue::One(last);
                }
                item
            }
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        match self {
            HoldQueue::One(_) => 1,
            HoldQueue::Many(q) => q.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The queue behaves as a VecDeque under any sequence of pushes and removals.
        #[test]
        fn behaves_as_a_deque(ops in prop::collection::vec((any::<bool>(), 0usize..4, any::<u8>()), 0..64)) {
            let mut q = HoldQueue::default();
            let mut model = VecDeque::new();
            for (push, at, v) in ops {
                if push {
                    q.push_back(v);
                    model.push_back(v);
                } else {
                    prop_assert_eq!(q.remove(at), model.remove(at));
                }
                prop_assert_eq!(q.len(), model.len());
                prop_assert_eq!(q.is_empty(), model.is_empty());
                prop_assert_eq!(q.iter().copied().collect::<Vec<_>>(), model.iter().copied().collect::<Vec<_>>());
                prop_assert_eq!(q.position(|&x| x == v), model.iter().position(|&x| x == v));
            }
        }
    }
}
