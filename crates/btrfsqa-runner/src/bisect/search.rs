//! The bisection itself, pure: which commit to test next, given what the
//! tested ones showed, and when the first bad commit is known (or cannot
//! be).

pub use btrfsqa_model::bisect::Mark;

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Test the commit at this index.
    Test(usize),
    /// The commit at this index is the first bad one.
    Found(usize),
    /// The first bad commit is one of these (indices), which could not be
    /// told apart (skipped).
    Undecided(Vec<usize>),
}

/// The commits after the good one up to the bad one (oldest first; the
/// last is the bad commit) and the marks found so far.
#[derive(Debug, Clone)]
pub struct Search {
    marks: Vec<Option<Mark>>,
}

impl Search {
    /// A search over `commits` commits; the last one is bad.
    pub fn new(commits: usize) -> Search {
        let mut marks = vec![None; commits];
        if let Some(last) = marks.last_mut() {
            *last = Some(Mark::Bad);
        }
        Search { marks }
    }

    /// Records what commit `index` showed.
    pub fn mark(&mut self, index: usize, mark: Mark) {
        self.marks[index] = Some(mark);
    }

    /// What is known of commit `index`.
    pub fn mark_of(&self, index: usize) -> Option<Mark> {
        self.marks[index]
    }

    /// The next step: the unmarked commit nearest the middle of the range
    /// between the newest good one (or the start) and the oldest bad one.
    pub fn next(&self) -> Next {
        // Bad commits after a good one are what is known; a good commit
        // newer than the oldest bad one would contradict it and is ignored.
        let bad = self
            .marks
            .iter()
            .position(|m| *m == Some(Mark::Bad))
            .expect("the last commit is bad");
        let good = self.marks[..bad]
            .iter()
            .rposition(|m| *m == Some(Mark::Good));
        let low = good.map_or(0, |g| g + 1);
        let open: Vec<usize> = (low..bad).filter(|&i| self.marks[i].is_none()).collect();
        if open.is_empty() {
            if (low..bad).all(|i| self.marks[i] == Some(Mark::Skip)) && low < bad {
                return Next::Undecided((low..=bad).collect());
            }
            return Next::Found(bad);
        }
        let middle = (low + bad) / 2;
        let nearest = *open
            .iter()
            .min_by_key(|&&i| (i.abs_diff(middle), i))
            .expect("not empty");
        Next::Test(nearest)
    }
}

/// The most test runs a bisection of `commits` commits takes with one run
/// per step and no skip: the bad commit once, `ceil(log2 n)` steps, the
/// culprit and its parent again.
pub fn budget(commits: usize) -> usize {
    let steps = (commits.max(1) as f64).log2().ceil() as usize;
    steps + 3
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bisects `n` commits whose first bad one is `culprit` (skipping those
    /// in `broken`); returns what it found and the commits it tested.
    fn bisect(n: usize, culprit: usize, broken: &[usize]) -> (Next, Vec<usize>) {
        let mut search = Search::new(n);
        let mut tested = Vec::new();
        loop {
            match search.next() {
                Next::Test(i) => {
                    tested.push(i);
                    let mark = if broken.contains(&i) {
                        Mark::Skip
                    } else if i >= culprit {
                        Mark::Bad
                    } else {
                        Mark::Good
                    };
                    search.mark(i, mark);
                }
                done => return (done, tested),
            }
        }
    }

    #[test]
    fn finds_every_culprit_within_log2_steps() {
        for n in 1..=64 {
            for culprit in 0..n {
                let (found, tested) = bisect(n, culprit, &[]);
                assert_eq!(found, Next::Found(culprit), "n={n} culprit={culprit}");
                let steps = (n as f64).log2().ceil() as usize;
                assert!(tested.len() <= steps, "n={n} culprit={culprit}: {tested:?}");
            }
        }
        assert_eq!(budget(8), 6);
        assert_eq!(budget(1), 3);
    }

    #[test]
    fn a_commit_that_does_not_build_is_stepped_around() {
        // 8 commits, the culprit is 5, commit 3 does not build.
        let (found, tested) = bisect(8, 5, &[3]);
        assert_eq!(found, Next::Found(5));
        assert!(tested.contains(&3), "{tested:?}");
        // The commit before the culprit does not build: 4 or 5 it is.
        let (found, _) = bisect(8, 5, &[4]);
        assert_eq!(found, Next::Undecided(vec![4, 5]));
        let (found, _) = bisect(8, 4, &[3]);
        assert_eq!(found, Next::Undecided(vec![3, 4]));
        // Nothing builds: undecidable.
        let (found, _) = bisect(5, 2, &[0, 1, 2, 3]);
        assert_eq!(found, Next::Undecided(vec![0, 1, 2, 3, 4]));
    }
}
