//! The TLS terminator of `scripts/bench.sh`'s HTTPS variant (`TLS=1`): the tests' terminator
//! (`tests/common/tls.rs`, a CA made at start, tokio-rustls) in front of a local server, as a
//! process, so that every system in the benchmark talks HTTPS to the same Garage.
//!
//!     tls_terminator UPSTREAM_ADDR CA_PEM_OUT
//!
//! Writes the CA to CA_PEM_OUT, prints the `https://127.0.0.1:PORT` URL, and serves until
//! killed.

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Runtime::new().expect("runtime"))
}

#[allow(dead_code)]
#[path = "../tests/common/tls.rs"]
mod tls;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (Some(upstream), Some(out)) = (a.get(1), a.get(2)) else {
        eprintln!("usage: tls_terminator UPSTREAM_ADDR CA_PEM_OUT");
        std::process::exit(2);
    };
    let t = tls::Terminator::start(upstream.parse().expect("UPSTREAM_ADDR is host:port"));
    std::fs::copy(tls::ca_file(), out).expect("write the CA");
    println!("{}", t.url());
    loop {
        std::thread::park();
    }
}
