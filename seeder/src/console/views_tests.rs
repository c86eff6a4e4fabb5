use pollen_core::status::Phase;

use super::*;
use crate::console::fixture;

#[test]
fn stage_and_site_counts_add_up_to_the_records() {
    let entry = fixture::release(3);
    let records = fixture::records(&entry, 800);
    let p = release_progress(&entry, &records, 5_000);
    assert_eq!(p.stages.len(), 3);
    assert_eq!(p.totals.seen, 800, "every bucket falls in the 100 % stage");
    let by_stage: u32 = p.stages.iter().map(|s| s.counts.seen).sum();
    let by_site: u32 = p.sites.iter().map(|s| s.counts.seen).sum();
    assert_eq!((by_stage, by_site), (800, 800));
    assert_eq!(p.sites.len(), 20);
    // Phases cycle with period 8: 3 committed, 1 each of the others.
    assert_eq!(p.totals.installed, 300);
    assert_eq!(p.totals.rolled_back, 100);
    assert_eq!(p.totals.failed, 100);
    assert_eq!(p.totals.waiting, 100);
    assert_eq!(p.totals.installing, 100);
    assert_eq!(p.totals.downloading, 100);
    assert_eq!(p.release.state, "rolling-out");
    assert_eq!(p.release.open_stage, Some(1));
    assert!(!p.auto_halted, "not halted");
}

#[test]
fn a_halt_over_the_threshold_counts_as_automatic() {
    let mut entry = fixture::release(3);
    entry.control = Some(fixture::control(&entry, 2, None, true));
    let records = fixture::records(&entry, 80);
    let p = release_progress(&entry, &records, 5_000);
    assert_eq!(p.release.state, "halted");
    assert!(p.auto_halted, "25 % failed or rolled back, over 20 %");
    let text = metrics_text(&[p]);
    assert!(text.contains("pollen_rollout_auto_halted{channel=\"stable\",release=\"3\"} 1"));
    assert!(text.contains("pollen_rollout_halted{channel=\"stable\",release=\"3\"} 1"));
    assert!(text.contains("stage=\"1\",state=\"installed\"}"));
}

#[test]
fn records_of_other_releases_are_left_out() {
    let a = fixture::release(3);
    let b = fixture::release(4);
    let records = fixture::records(&b, 50);
    let p = release_progress(&a, &records, 5_000);
    assert_eq!(p.totals.seen, 0);
    assert!(p.sites.is_empty());
}

#[test]
fn devices_filter_and_paginate() {
    let entry = fixture::release(3);
    let records = fixture::records(&entry, 10_000);
    let q = DeviceQuery {
        site: Some("site-03".into()),
        ..DeviceQuery::default()
    };
    let page = devices(&records, &q, 5_000);
    assert_eq!(page.total, 500);
    assert_eq!(page.devices.len(), DEFAULT_PAGE);
    assert!(page
        .devices
        .iter()
        .all(|d| d.site.as_deref() == Some("site-03")));
    // Sorted by device id; pages do not overlap and end where the matches do.
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let q = DeviceQuery {
            site: Some("site-03".into()),
            offset: Some(offset),
            limit: Some(120),
            ..DeviceQuery::default()
        };
        let page = devices(&records, &q, 5_000);
        if page.devices.is_empty() {
            break;
        }
        seen.extend(page.devices.into_iter().map(|d| d.device));
        offset += 120;
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted);
    assert_eq!(seen.len(), 500);

    let q = DeviceQuery {
        phase: Some(Phase::RolledBack.as_str().into()),
        hardware: Some("hw-1".into()),
        limit: Some(100_000),
        ..DeviceQuery::default()
    };
    let page = devices(&records, &q, 5_000);
    assert_eq!(page.limit, MAX_PAGE, "limit is capped");
    assert!(page.total > 0);
    assert!(page.devices.iter().all(|d| d.phase == "rolled-back"
        && d.hardware.as_deref() == Some("hw-1")
        && d.last_error.is_some()));
    let none = DeviceQuery {
        release: Some(9),
        ..DeviceQuery::default()
    };
    assert_eq!(devices(&records, &none, 5_000).total, 0);
}

#[test]
fn savings_per_site_from_the_byte_counters() {
    let entry = fixture::release(3);
    let records = fixture::records(&entry, 40);
    let s = savings(&records);
    assert_eq!(s.len(), 20);
    // site-00 holds devices 0 and 20: 4 MiB each from the uplink.
    assert_eq!(s[0].site, "site-00");
    assert_eq!(s[0].devices, 2);
    assert_eq!(s[0].bytes_from_uplink, 8 << 20);
    assert_eq!(s[0].bytes_from_site, 6 << 20);
    assert_eq!(s[0].saved_percent, 42.86);
    assert_eq!(s[1].saved_percent, 75.0);
    assert_eq!(savings(&[]), Vec::new());
}

#[test]
fn channels_list_releases_newest_first() {
    let a = fixture::release(3);
    let b = fixture::release(4);
    let records = fixture::records(&a, 7);
    let c = channels(&[a, b], &records);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].releases, vec![4, 3]);
    assert_eq!(c[0].newest, Some(4));
    assert_eq!(c[0].devices, 7);
}
