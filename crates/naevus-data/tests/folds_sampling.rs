use std::collections::{HashMap, HashSet};

use naevus_data::{Sampling, epoch_order, stratified_group_kfold};

/// Per-fold per-class counts.
fn counts(folds: &[usize], labels: &[usize], k: usize, classes: usize) -> Vec<Vec<usize>> {
    let mut c = vec![vec![0; classes]; k];
    for (f, l) in folds.iter().zip(labels) {
        c[*f][*l] += 1;
    }
    c
}

#[test]
fn singleton_groups_are_stratified_within_one() {
    // 103 items, 3 classes (70/25/8), every item its own group.
    let labels: Vec<usize> = (0..103).map(|i| if i < 70 { 0 } else if i < 95 { 1 } else { 2 }).collect();
    let names: Vec<String> = (0..103).map(|i| format!("g{i}")).collect();
    let groups: Vec<&str> = names.iter().map(String::as_str).collect();
    let k = 5;
    let folds = stratified_group_kfold(&labels, &groups, k, 7).unwrap();
    let c = counts(&folds, &labels, k, 3);
    for (class, total) in [70usize, 25, 8].iter().enumerate() {
        let ideal = *total as f64 / k as f64;
        for fold in &c {
            assert!((fold[class] as f64 - ideal).abs() < 1.0, "class {class}: {c:?}");
        }
    }
}

#[test]
fn groups_never_split_and_deterministic() {
    // 60 patients with 1..4 images each; patient-level label with some mixed patients.
    let mut labels = Vec::new();
    let mut names = Vec::new();
    for p in 0..60 {
        for j in 0..(p % 4 + 1) {
            names.push(format!("patient{p}"));
            labels.push(usize::from(p % 5 == 0 || (p % 7 == 0 && j == 0)));
        }
    }
    let groups: Vec<&str> = names.iter().map(String::as_str).collect();
    let a = stratified_group_kfold(&labels, &groups, 4, 1).unwrap();
    assert_eq!(a, stratified_group_kfold(&labels, &groups, 4, 1).unwrap());
    assert_ne!(a, stratified_group_kfold(&labels, &groups, 4, 2).unwrap());
    let mut fold_of: HashMap<&str, usize> = HashMap::new();
    for (g, f) in groups.iter().zip(&a) {
        assert_eq!(*fold_of.entry(g).or_insert(*f), *f, "group {g} in two folds");
    }
    // Every fold used, positives spread (15 positive items over 4 folds).
    let c = counts(&a, &labels, 4, 2);
    assert!(c.iter().all(|f| f[0] > 0 && f[1] >= 2), "{c:?}");
}

#[test]
fn kfold_argument_errors() {
    let labels = [0, 1, 0];
    assert!(stratified_group_kfold(&labels, &["a", "b", "c"], 1, 0).is_err());
    let err = stratified_group_kfold(&labels, &["a", "a", "b"], 3, 0).unwrap_err().to_string();
    assert!(err.contains("number of groups (2)"), "{err}");
    assert!(stratified_group_kfold(&labels, &["a", "b"], 2, 0).is_err());
}

#[test]
fn shuffle_is_a_permutation_and_varies_by_epoch() {
    let labels = vec![0usize; 50];
    let e0 = epoch_order(&labels, &Sampling::Shuffle, 3, 0);
    let mut sorted = e0.clone();
    sorted.sort();
    assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    assert_eq!(e0, epoch_order(&labels, &Sampling::Shuffle, 3, 0));
    assert_ne!(e0, epoch_order(&labels, &Sampling::Shuffle, 3, 1));
    assert_ne!(e0, epoch_order(&labels, &Sampling::Shuffle, 4, 0));
}

#[test]
fn balanced_draws_classes_equally() {
    // 900 negatives, 100 positives.
    let labels: Vec<usize> = (0..1000).map(|i| usize::from(i % 10 == 0)).collect();
    let order = epoch_order(&labels, &Sampling::Balanced, 9, 0);
    assert_eq!(order.len(), 1000);
    let pos = order.iter().filter(|&&i| labels[i] == 1).count();
    assert_eq!(pos, 500);
    // Positives are reused (with replacement), and many distinct ones appear.
    let distinct: HashSet<usize> = order.iter().copied().filter(|&i| labels[i] == 1).collect();
    assert!(distinct.len() > 90 && distinct.len() <= 100);
}

#[test]
fn undersample_keeps_all_positives() {
    let labels: Vec<usize> = (0..1000).map(|i| usize::from(i % 10 == 0)).collect();
    let s = Sampling::Undersample { negatives_per_positive: 3.0 };
    let e0 = epoch_order(&labels, &s, 5, 0);
    let e1 = epoch_order(&labels, &s, 5, 1);
    for e in [&e0, &e1] {
        assert_eq!(e.len(), 400);
        assert_eq!(e.iter().filter(|&&i| labels[i] == 1).count(), 100);
        assert_eq!(e.iter().copied().collect::<HashSet<_>>().len(), 400);
    }
    let neg0: HashSet<usize> = e0.iter().copied().filter(|&i| labels[i] == 0).collect();
    let neg1: HashSet<usize> = e1.iter().copied().filter(|&i| labels[i] == 0).collect();
    assert_ne!(neg0, neg1, "a fresh subset of negatives each epoch");
    // More negatives requested than exist: all of them.
    let all = epoch_order(&labels, &Sampling::Undersample { negatives_per_positive: 100.0 }, 5, 0);
    assert_eq!(all.len(), 1000);
    assert!(epoch_order(&[], &Sampling::Balanced, 0, 0).is_empty());
}

/// Two sources shaped like the shared data's: a small one (ISIC 2017: 2,000 images, 19%
/// melanoma) and a large one (HAM10000: 8,000 images, 11% melanoma).
fn two_sources() -> (Vec<usize>, Vec<usize>) {
    let small = (0..2000).map(|i| (usize::from(i % 100 < 19), 0));
    let large = (0..8000).map(|i| (usize::from(i % 100 < 11), 1));
    small.chain(large).unzip()
}

#[test]
fn source_balanced_gives_each_source_its_share_and_one_melanoma_in_four_within() {
    let (labels, sources) = two_sources();
    let count = |order: &[usize], source: usize, label: usize| order.iter().filter(|&&i| sources[i] == source && labels[i] == label).count();
    // Equal shares: the epoch is as long as undersampling would make it (380 + 880 melanomas,
    // three benign images each), half of it from each source.
    let equal = Sampling::SourceBalanced { sources: sources.clone(), shares: vec![1.0, 1.0], negatives_per_positive: 3.0 };
    let order = epoch_order(&labels, &equal, 7, 0);
    assert_eq!(order.len(), 5040);
    for source in 0..2 {
        assert_eq!(count(&order, source, 1) + count(&order, source, 0), 2520, "source {source}");
        assert_eq!(count(&order, source, 1), 630, "source {source}: a quarter melanomas");
    }
    // The small source's 380 melanomas are each drawn once before any is drawn again.
    let drawn: HashSet<usize> = order.iter().copied().filter(|&i| sources[i] == 0 && labels[i] == 1).collect();
    assert_eq!(drawn.len(), 380);
    // Stated shares 1:3, and a source left out with share 0.
    let stated = Sampling::SourceBalanced { sources: sources.clone(), shares: vec![1.0, 3.0], negatives_per_positive: 3.0 };
    let order = epoch_order(&labels, &stated, 7, 1);
    assert_eq!((count(&order, 0, 0) + count(&order, 0, 1), count(&order, 1, 0) + count(&order, 1, 1)), (1260, 3780));
    let alone = Sampling::SourceBalanced { sources: sources.clone(), shares: vec![1.0, 0.0], negatives_per_positive: 3.0 };
    let order = epoch_order(&labels, &alone, 7, 2);
    assert_eq!(order.len(), 1520);
    assert!(order.iter().all(|&i| sources[i] == 0));
    assert_eq!(order.iter().copied().collect::<HashSet<_>>().len(), 1520, "no image twice when the pool suffices");
    // Deterministic for (seed, epoch), fresh for another epoch.
    assert_eq!(epoch_order(&labels, &equal, 7, 0), epoch_order(&labels, &equal, 7, 0));
    assert_ne!(epoch_order(&labels, &equal, 7, 0), epoch_order(&labels, &equal, 7, 3));
}
