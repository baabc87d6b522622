//! The raw baseline of `scripts/bench.sh`: the same server driven directly through
//! aws-sdk-s3 (via sealfs's store), as fast as this machine allows, with no filesystem.
//!
//!     raw put FILE s3://BUCKET/KEY        multipart, 8 MiB parts, 8 in flight
//!     raw get s3://BUCKET/KEY             parallel 8 MiB ranged GETs, 8 in flight
//!     raw put-dir DIR s3://BUCKET/PREFIX  one PUT per file, sequentially
//!     raw head-dir s3://BUCKET/PREFIX     list, then one HEAD per object, sequentially
//!     raw get-dir s3://BUCKET/PREFIX      list, then one GET per object, sequentially
//!     raw list s3://BUCKET/PREFIX         ListObjectsV2 pages (with the delimiter)
//!     raw random s3://BUCKET/KEY BS SECS  random ranged GETs of BS bytes, one at a time
//!
//! Prints one line: `seconds=<s> ops=<n>`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sealfs::store::s3::{S3Config, S3Store};
use sealfs::store::{CompletedPart, ObjectStore, UserMeta};

const PART: u64 = 8 << 20;
const INFLIGHT: usize = 8;

fn split(url: &str) -> (String, String) {
    let rest = url.strip_prefix("s3://").expect("s3:// URL");
    let (b, k) = rest.split_once('/').unwrap_or((rest, ""));
    (b.to_string(), k.to_string())
}

async fn store(bucket: &str) -> Arc<dyn ObjectStore> {
    let cfg = S3Config {
        bucket: bucket.into(),
        force_path_style: true,
        ..Default::default()
    };
    Arc::new(S3Store::connect(&cfg).await.expect("connect"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let t = Instant::now();
    let ops: u64 = match a[1].as_str() {
        "put" => {
            let (b, key) = split(&a[3]);
            let s = store(&b).await;
            let data = Bytes::from(std::fs::read(&a[2])?);
            let id = s.create_multipart(&key, &UserMeta::new()).await?;
            let mut set = tokio::task::JoinSet::new();
            let mut parts = Vec::new();
            let n = (data.len() as u64).div_ceil(PART);
            for i in 0..n {
                while set.len() >= INFLIGHT {
                    parts.push(set.join_next().await.unwrap()??);
                }
                let body = data
                    .slice((i * PART) as usize..((i + 1) * PART).min(data.len() as u64) as usize);
                let (s, key, id) = (s.clone(), key.clone(), id.clone());
                set.spawn(async move {
                    let etag = s.upload_part(&key, &id, i as i32 + 1, body).await?;
                    Ok::<_, anyhow::Error>(CompletedPart {
                        number: i as i32 + 1,
                        etag,
                    })
                });
            }
            while let Some(p) = set.join_next().await {
                parts.push(p??);
            }
            parts.sort_by_key(|p| p.number);
            s.complete_multipart(&key, &id, &parts).await?;
            n + 2
        }
        "get" => {
            let (b, key) = split(&a[2]);
            let s = store(&b).await;
            let size = s.head(&key).await?.expect("object").size;
            let sem = Arc::new(tokio::sync::Semaphore::new(INFLIGHT));
            let mut set = tokio::task::JoinSet::new();
            let n = size.div_ceil(PART);
            for i in 0..n {
                let permit = sem.clone().acquire_owned().await?;
                let (s, key) = (s.clone(), key.clone());
                set.spawn(async move {
                    let r = s
                        .get_range(&key, i * PART..((i + 1) * PART).min(size), None)
                        .await;
                    drop(permit);
                    r.map(|b| b.len())
                });
            }
            while let Some(r) = set.join_next().await {
                r??;
            }
            n
        }
        "put-dir" => {
            let (b, prefix) = split(&a[3]);
            let s = store(&b).await;
            let mut n = 0;
            let mut names: Vec<_> = std::fs::read_dir(&a[2])?
                .map(|e| e.unwrap().path())
                .collect();
            names.sort();
            for p in names {
                let key = format!(
                    "{}/{}",
                    prefix.trim_end_matches('/'),
                    p.file_name().unwrap().to_string_lossy()
                );
                s.put(&key, Bytes::from(std::fs::read(&p)?), &UserMeta::new())
                    .await?;
                n += 1;
            }
            n
        }
        "head-dir" | "get-dir" => {
            let (b, prefix) = split(&a[2]);
            let s = store(&b).await;
            let objects =
                sealfs::store::list_all(&*s, &format!("{}/", prefix.trim_end_matches('/'))).await?;
            for o in &objects {
                if a[1] == "head-dir" {
                    s.head(&o.key).await?;
                } else {
                    s.get_range(&o.key, 0..o.size, None).await?;
                }
            }
            objects.len() as u64
        }
        "list" => {
            let (b, prefix) = split(&a[2]);
            let s = store(&b).await;
            let prefix = format!("{}/", prefix.trim_end_matches('/'));
            let (mut token, mut n) = (None, 0);
            loop {
                let page = s.list(&prefix, Some("/"), token, None).await?;
                n += 1;
                match page.next_token {
                    Some(t) => token = Some(t),
                    None => break,
                }
            }
            n
        }
        "random" => {
            let (b, key) = split(&a[2]);
            let bs: u64 = a[3].parse()?;
            let secs: f64 = a[4].parse()?;
            let s = store(&b).await;
            let size = s.head(&key).await?.expect("object").size;
            let mut x: u64 = 0x9e3779b97f4a7c15;
            let mut n = 0;
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs_f64(secs) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let off = (x % (size / bs)) * bs;
                s.get_range(&key, off..off + bs, None).await?;
                n += 1;
            }
            n
        }
        other => anyhow::bail!("unknown command {other}"),
    };
    println!("seconds={:.3} ops={ops}", t.elapsed().as_secs_f64());
    Ok(())
}
