//! The typed decode of a realistic `VodSourceFileStart` body, nested `msg`
//! and `source_urls` included, beside an untyped `serde_json::Value` parse
//! of the same bytes. `cargo xtask bench` compares the two.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// A body of about 550 bytes, shaped like Tencent's sample.
pub fn body() -> Vec<u8> {
    let body = serde_json::json!({
        "appid": 1_250_000_000,
        "callback_event": "VodSourceFileStart",
        "callback_url": "https://callbacks.example.com/callback?token=0123456789abcdef",
        "event_type": 314,
        "event_time": "1764800000",
        "interface": "general_callback",
        "msg": "{\"url\":\"http://vod.example.com/live/normal_466247620123453100448-upload-216b/playlist.m3u8\",\"index\":3,\"duration\":14920}",
        "product_name": "pullpush",
        "source_urls": "[\"http://vod.example.com/live/normal_466247620123453100448-upload-216b/playlist.m3u8\",\"http://vod.example.com/live/b.m3u8\"]\n",
        "stream_id": "testvod",
        "task_id": "118145",
        "to_url": "rtmp://5000.livepush.myqcloud.com/live/testvod"
    });
    serde_json::to_vec(&body).unwrap()
}

fn decode(c: &mut Criterion) {
    let body = body();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("typed", |b| {
        b.iter(|| relaycb_core::decode(black_box(&body)).unwrap());
    });
    group.bench_function("serde_json_value", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&body)).unwrap());
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
