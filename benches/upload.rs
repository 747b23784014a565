//! Signature verification, Content-Range parsing, and uploads through the
//! layer into memory and onto disk, in process.
//!
//! ```sh
//! cargo bench --bench upload
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::Full;
use tower::{Service, ServiceExt};
use tower_layer::Layer;
use tower_signed_upload::storage::{FsStorage, MemoryStorage, Storage};
use tower_signed_upload::{
    headers::ContentRange, services::RespondCreated, SignedMethod, SignedUploadLayer, SigningKey,
    UploadPath,
};

fn verify(c: &mut Criterion) {
    let layer = SignedUploadLayer::new(
        SigningKey::new("a project key of 32 bytes or so!").unwrap(),
        MemoryStorage::new(),
    );
    let url = layer.signer().sign(
        &UploadPath::new("nested/folders/image.png").unwrap(),
        SignedMethod::Put,
        Duration::from_secs(3600),
    );
    let valid: Uri = url.path_and_query().parse().unwrap();
    let mut forged = url.path_and_query().to_owned();
    forged.replace_range(forged.len() - 4.., "AAAA");
    let forged: Uri = forged.parse().unwrap();
    let mut group = c.benchmark_group("verify");
    group.bench_function("valid", |b| {
        b.iter(|| layer.verify(&Method::PUT, &valid).unwrap())
    });
    group.bench_function("invalid", |b| {
        b.iter(|| layer.verify(&Method::PUT, &forged).unwrap_err())
    });
    group.finish();
}

fn content_range(c: &mut Criterion) {
    let mut group = c.benchmark_group("content_range");
    let value = b"bytes 1073741824-1090519039/5368709120";
    group.throughput(Throughput::Bytes(value.len() as u64));
    group.bench_function("parse", |b| {
        b.iter(|| ContentRange::parse(std::hint::black_box(value)).unwrap())
    });
    group.finish();
}

/// Uploads `size` bytes, whole or in `chunk`-sized pieces, to a fresh URL,
/// and panics unless every answer is the one a stored piece gets (202 for a
/// chunk, 201 for the last one or a simple PUT): a refused request is fast,
/// and must not pass for a measurement.
async fn upload<S, B>(
    service: &mut S,
    layer: &SignedUploadLayer,
    n: u64,
    data: &Bytes,
    chunk: Option<usize>,
) where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>,
{
    let path = UploadPath::new(&format!("bench/{n}.bin")).unwrap();
    let url = layer
        .signer()
        .sign(&path, SignedMethod::Put, Duration::from_secs(3600));
    let total = data.len();
    let pieces: Vec<(usize, usize)> = match chunk {
        None => vec![(0, total)],
        Some(size) => (0..total)
            .step_by(size)
            .map(|first| (first, (first + size).min(total)))
            .collect(),
    };
    for (first, end) in pieces {
        let expected = if end == total {
            StatusCode::CREATED
        } else {
            StatusCode::ACCEPTED
        };
        let mut request = Request::put(url.path_and_query());
        if chunk.is_some() {
            request = request.header(
                "content-range",
                format!("bytes {first}-{}/{total}", end - 1),
            );
        }
        let request = request.body(Full::new(data.slice(first..end))).unwrap();
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        assert_eq!(
            response.status(),
            expected,
            "bytes {first}-{} of {total} to {}",
            end - 1,
            path.as_str()
        );
    }
}

fn layer_uploads(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let memory: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let fs: Arc<dyn Storage> = Arc::new(FsStorage::new(dir.path()).unwrap());
    let backends = [("memory", memory), ("fs", fs)];
    let mut group = c.benchmark_group("layer");
    group.sample_size(10);
    for size in [1usize << 20, 64 << 20] {
        let data = Bytes::from(vec![7u8; size]);
        group.throughput(Throughput::Bytes(size as u64));
        for (name, storage) in &backends {
            for (mode, chunk) in [("simple", None), ("chunked-8MiB", Some(8 << 20))] {
                if size == 1 << 20 && chunk.is_some() {
                    continue;
                }
                let layer = SignedUploadLayer::with_storage(
                    SigningKey::new("key").unwrap(),
                    Arc::clone(storage),
                );
                let mut service = layer.layer(RespondCreated);
                let mut n = 0u64;
                group.bench_function(format!("{name}/{mode}/{}MiB", size >> 20), |b| {
                    b.iter_batched(
                        || {
                            n += 1;
                            n
                        },
                        |n| runtime.block_on(upload(&mut service, &layer, n, &data, chunk)),
                        BatchSize::PerIteration,
                    )
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, verify, content_range, layer_uploads);
criterion_main!(benches);
