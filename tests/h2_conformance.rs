//! HTTP/2 conformance of the TLS listener (issue 15), modelled on h2spec's cases for RFC 7540 /
//! RFC 9113 (section numbers are h2spec's, RFC 7540 numbering; the §8.2 field rules are RFC
//! 9113's). Frames are written by hand (`support::h2raw`), since a conforming client cannot
//! send bad ones; header blocks use HPACK literals without indexing.
//!
//! Each case runs on its own connection to one gateway. "Connection error X": a GOAWAY with X.
//! "Stream error X": a RST_STREAM with X on that stream, or a GOAWAY with X (an endpoint may
//! always escalate a stream error). "Malformed" (RFC 9113 §8.1.1): a stream error
//! PROTOCOL_ERROR, or a 400 answer in errno JSON (the gateway refusing it itself).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use support::TestGateway;
use support::client::TestCerts;
use support::fake::FakeUpstream;
use support::h2raw::*;
use support::raw::tls_connect;

type Conn = H2<TlsStream<TcpStream>>;

/// A gateway with one TLS listener (h2 by ALPN) in front of a fake upstream.
struct Env {
    gw: TestGateway,
    ca_pem: String,
    _upstream: FakeUpstream,
    _dir: tempfile::TempDir,
}

impl Env {
    async fn start() -> Env {
        let upstream = FakeUpstream::start().await;
        let dir = tempfile::tempdir().unwrap();
        let certs = TestCerts::new(&["localhost"]);
        let paths = certs.write_to(dir.path());
        let toml = format!(
            r#"
[server]
drain_timeout = "2s"

[[listeners]]
name = "edge"
addr = "127.0.0.1:0"
[listeners.tls]
[[listeners.tls.certificates]]
cert = {cert:?}
key = {{ file = {key:?} }}
server_names = ["localhost"]

[[upstreams]]
name = "api"
url = "{url}"
connect_timeout = "1s"
response_timeout = "2s"

[limits]
h2_max_concurrent_streams = 10

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "api"
"#,
            cert = paths.cert.display().to_string(),
            key = paths.key.display().to_string(),
            url = upstream.url(),
        );
        let gw = TestGateway::start(&toml).await;
        Env {
            gw,
            ca_pem: certs.ca_cert_pem,
            _upstream: upstream,
            _dir: dir,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.gw.addr
    }

    /// A connection after the preface and SETTINGS exchange.
    async fn conn(&self) -> Conn {
        let mut h2 = self.raw(&[]).await;
        h2.handshake().await;
        h2
    }

    /// A connection with the preface and our SETTINGS (plus `extra`) sent, nothing read.
    async fn raw(&self, extra: &[(u16, u32)]) -> Conn {
        let tls = tls_connect(self.addr(), &self.ca_pem, b"h2").await;
        H2::start(tls, extra).await
    }
}

/// What the server must do.
#[derive(Clone, Copy, Debug)]
enum Want {
    Connection(u32),
    /// Stream error with one of these codes.
    Stream(u32, &'static [u32]),
    /// Malformed request on this stream.
    Malformed(u32),
    /// A response with this status on this stream.
    Answer(u32, u16),
    /// The frames are ignored: a PING sent after them is acknowledged.
    Ignored,
    /// Refused by the gateway: a 4xx errno answer, or a stream error PROTOCOL_ERROR.
    Refused(u32),
}

/// Where the h2 library (which frames HTTP/2 for hyper; the gateway never sees frames) differs
/// from RFC 9113, by case name, with what it does instead. Each is still checked: the case must
/// get exactly this, so a fixed h2 release shows up here as a failure to update the table.
/// h2 ends the connection in every one of them; only the code differs (h2's
/// `codec/framed_read.rs` answers every undecodable frame with PROTOCOL_ERROR).
const H2_DEVIATIONS: &[(&str, Want)] = &[
    (
        "4.3/1 an invalid header block fragment",
        Want::Connection(PROTOCOL_ERROR),
    ),
    (
        "6.3/2 PRIORITY of a length other than 5",
        Want::Connection(PROTOCOL_ERROR),
    ),
    (
        "6.4/2 RST_STREAM of a length other than 4",
        Want::Connection(PROTOCOL_ERROR),
    ),
    (
        "6.5/1 SETTINGS ACK with a payload",
        Want::Connection(PROTOCOL_ERROR),
    ),
    (
        "6.5/3 SETTINGS of a length not a multiple of 6",
        Want::Connection(PROTOCOL_ERROR),
    ),
    (
        "6.5.2/2 SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1",
        Want::Connection(PROTOCOL_ERROR),
    ),
    (
        "6.7/4 PING of a length other than 8",
        Want::Connection(PROTOCOL_ERROR),
    ),
    (
        "6.9/3 WINDOW_UPDATE of a length other than 4",
        Want::Connection(PROTOCOL_ERROR),
    ),
    // h2 decodes the trailer's pseudo-field into its request pseudo-headers and drops it: the
    // request is served and nothing of the field reaches the gateway or the upstream.
    (
        "8.1.2.1/3 a pseudo-header in trailers",
        Want::Answer(1, 200),
    ),
];

/// One h2spec-style case: frames sent after the handshake, and what must follow.
struct Case {
    name: &'static str,
    frames: fn() -> Vec<Vec<u8>>,
    want: Want,
}

const GET: fn() -> Vec<u8> = || headers(1, &get_fields("/api/x", &[]), true);

/// A POST on `stream` whose body is still to come.
fn post_open(stream: u32, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut fields = vec![
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", "localhost"),
        (":path", "/api/x"),
    ];
    fields.extend_from_slice(extra);
    headers(stream, &fields, false)
}

fn get_with(extra: &[(&str, &str)]) -> Vec<u8> {
    headers(1, &get_fields("/api/x", extra), true)
}

fn fields_only(fields: &[(&str, &str)]) -> Vec<u8> {
    headers(1, fields, true)
}

const PROTOCOL: &[u32] = &[PROTOCOL_ERROR];
const CLOSED: &[u32] = &[STREAM_CLOSED, PROTOCOL_ERROR];

fn cases() -> Vec<Case> {
    vec![
        // --- 4.1 frame format ---
        Case {
            name: "4.1/1 unknown frame type is ignored",
            frames: || vec![frame(0xfe, 0, 0, b"unknown")],
            want: Want::Ignored,
        },
        Case {
            name: "4.1/2 undefined flags are ignored",
            frames: || vec![frame(PING, 0x16, 0, &[0; 8])],
            want: Want::Ignored,
        },
        Case {
            name: "4.1/3 the reserved bit is ignored",
            frames: || {
                let mut f = headers(1, &get_fields("/api/x", &[]), true);
                f[5] |= 0x80;
                vec![f]
            },
            want: Want::Answer(1, 200),
        },
        // --- 4.2 frame size ---
        Case {
            name: "4.2/1 a DATA frame of 2^14 octets is received",
            frames: || {
                vec![
                    post_open(1, &[("content-length", "16384")]),
                    frame(DATA, END_STREAM, 1, &[b'a'; 16384]),
                ]
            },
            want: Want::Answer(1, 200),
        },
        Case {
            name: "4.2/2 a DATA frame over SETTINGS_MAX_FRAME_SIZE",
            frames: || {
                vec![
                    post_open(1, &[]),
                    frame(DATA, END_STREAM, 1, &[b'a'; 16385]),
                ]
            },
            want: Want::Stream(1, &[FRAME_SIZE_ERROR]),
        },
        Case {
            name: "4.2/3 a HEADERS frame over SETTINGS_MAX_FRAME_SIZE",
            frames: || {
                let big = "a".repeat(16400);
                vec![headers(1, &get_fields("/api/x", &[("x-big", &big)]), true)]
            },
            want: Want::Connection(FRAME_SIZE_ERROR),
        },
        // --- 4.3 header compression ---
        Case {
            name: "4.3/1 an invalid header block fragment",
            frames: || vec![frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0x80])],
            want: Want::Connection(COMPRESSION_ERROR),
        },
        Case {
            name: "4.3/2 a PRIORITY frame inside a header block",
            frames: || {
                vec![
                    frame(HEADERS, END_STREAM, 1, &block(&get_fields("/api/x", &[]))),
                    priority(1, 0, 255),
                ]
            },
            want: Want::Connection(PROTOCOL_ERROR),
        },
        Case {
            name: "4.3/3 HEADERS to another stream inside a header block",
            frames: || {
                vec![
                    frame(HEADERS, END_STREAM, 1, &block(&get_fields("/api/x", &[]))),
                    headers(3, &get_fields("/api/x", &[]), true),
                ]
            },
            want: Want::Connection(PROTOCOL_ERROR),
        },
        // --- 5.1 stream states ---
        Case {
            name: "5.1/1 idle: DATA",
            frames: || vec![frame(DATA, 0, 1, b"x")],
            want: Want::Connection(PROTOCOL_ERROR),
        },
        Case {
            name: "5.1/2 idle: RST_STREAM",
            frames: || vec![rst_stream(1, CANCEL)],
            want: Want::Connection(PROTOCOL_ERROR),
        },
        Case {
            name: "5.1/3 idle: WINDOW_UPDATE",
            frames: || vec![window_update(1, 100)],
            want: Want::Connection(PROTOCOL_ERROR),
        },
        Case {
            name: "5.1/4 idle: CONTINUATION",
            frames: || {
                vec![frame(
                    CONTINUATION,
                    END_HEADERS,
                    1,
                    &block(&get_fields("/api/x", &[])),
                )]
            },
            want: Want::Connection(PROTOCOL_ERROR),
        },
        Case {
            name: "5.1/5 half closed (remote): DATA",
            frames: || vec![GET(), frame(DATA, END_STREAM, 1, b"x")],
            want: Want::Stream(1, CLOSED),
        },
        Case {
            name: "5.1/6 half closed (remote): HEADERS",
            frames: || vec![GET(), GET()],
            want: Want::Stream(1, CLOSED),
        },
        Case {
            name: "5.1/7 half closed (remote): CONTINUATION",
            frames: || {
                vec![
                    GET(),
                    frame(CONTINUATION, END_HEADERS, 1, &block(&[("x-a", "b")])),
                ]
            },
            want: Want::Stream(1, CLOSED),
        },
        Case {
            name: "5.1/8 closed: DATA after RST_STREAM",
            frames: || {
                vec![
                    post_open(1, &[]),
                    rst_stream(1, CANCEL),
                    frame(DATA, 0, 1, b"x"),
                ]
            },
            want: Want::Stream(1, CLOSED),
        },
        Case {
            name: "5.1/9 closed: HEADERS after RST_STREAM",
            frames: || vec![post_open(1, &[]), rst_stream(1, CANCEL), GET()],
            want: Want::Stream(1, CLOSED),
        },
        Case {
            name: "5.1/10 closed: CONTINUATION after RST_STREAM",
            frames: || {
                vec![
                    post_open(1, &[]),
                    rst_stream(1, CANCEL),
                    frame(CONTINUATION, END_HEADERS, 1, &block(&[("x-a", "b")])),
                ]
            },
            want: Want::Stream(1, CLOSED),
        },
        // --- 5.1.1 stream identifiers ---
        Case {
            name: "5.1.1/1 an even stream identifier",
            frames: || vec![headers(2, &get_fields("/api/x", &[]), true)],
            want: Want::Connection(PROTOCOL_ERROR),
        },
        Case {
            name: "5.1.1/2 a stream identifier smaller than the previous one",
            frames: || {
                vec![
                    headers(5, &get_fields("/api/x", &[]), true),
                    headers(3, &get_fields("/api/x", &[]), true),
                ]
            },
            want: Want::Connection(PROTOCOL_ERROR),
        },
        // --- 5.3.1 stream dependencies ---
        Case {
            name: "5.3.1/1 HEADERS depending on itself",
            frames: || {
                let mut payload = 1u32.to_be_bytes().to_vec();
                payload.push(16);
                payload.extend(block(&get_fields("/api/x", &[])));
                vec![frame(
                    HEADERS,
                    END_HEADERS | END_STREAM | PRIORITY_FLAG,
                    1,
                    &payload,
                )]
            },
            want: Want::Stream(1, PROTOCOL),
        },
        Case {
            name: "5.3.1/2 PRIORITY depending on itself",
            frames: || vec![priority(1, 1, 16)],
            want: Want::Stream(1, PROTOCOL),
        },
        // --- 5.4.1 connection error handling ---
        Case {
            name: "5.4.1/1 an invalid PING ends the connection with GOAWAY",
            frames: || vec![frame(PING, 0, 3, &[0; 8])],
            want: Want::Connection(PROTOCOL_ERROR),
        },
        // --- 5.5 extending HTTP/2 ---
        Case {
            name: "5.5/1 an unknown extension frame is ignored",
            frames: || vec![frame(0x16, 0xff, 0, b"ext")],
            want: Want::Ignored,
        },
        Case {
            name: "5.5/2 an unknown extension frame inside a header block",
            frames: || {
                vec![
                    frame(HEADERS, END_STREAM, 1, &block(&get_fields("/api/x", &[]))),
                    frame(0x16, 0, 1, b"ext"),
                ]
            },
            want: Want::Connection(PROTOCOL_ERROR),
        },
        // --- 6.1 DATA ---
        Case {
            name: "6.1/1 DATA on stream 0",
            frames: || vec![frame(DATA, 0, 0, b"x")],
            want: Want::Connection(PROTOCOL_ERROR),
        },
        Case {
            name: "6.1/2 DATA on a stream not open",
            frames: || vec![GET(), frame(DATA, 0, 1, b"x")],
            want: Want::Stream(1, CLOSED),
        },
        Case {
            name: "6.1/3 DATA with an invalid pad length",
            frames: || {
                vec![
                    post_open(1, &[]),
                    frame(DATA, PADDED | END_STREAM, 1, &[6, b'a', b'b']),
                ]
            },
            want: Want::Connection(PROTOCOL_ERROR),
        },
        // --- 6.2 HEADERS ---
        Case {
            name: "6.2/1 HEADERS on stream 0",
            frames: || vec![headers(0, &get_fields("/api/x", &[]), true)],
            want: Want::Connection(PROTOCOL_ERROR),
        },
        Case {
            name: "6.2/2 HEADERS with an invalid pad length",
            frames: || {
                let mut payload = vec![200u8];
                payload.extend(block(&get_fields("/api/x", &[])));
                vec![frame(
                    HEADERS,
                    END_HEADERS | END_STREAM | PADDED,
                    1,
                    &payload,
                )]
            },
            want: Want::Connection(PROTOCOL_ERROR),
        },
        // --- 6.3 PRIORITY ---
        Case {
            name: "6.3/1 PRIORITY on stream 0",
            frames: || vec![priority(0, 1, 16)],
            want: Want::Connection(PROTOCOL_ERROR),
        },
        Case {
            name: "6.3/2 PRIORITY of a length other than 5",
            frames: || vec![post_open(1, &[]), frame(PRIORITY, 0, 1, &[0, 0, 0, 0])],
            want: Want::Stream(1, &[FRAME_SIZE_ERROR]),
        },
        // --- 6.4 RST_STREAM ---
        Case {
            name: "6.4/1 RST_STREAM on stream 0",
            frames: || vec![rst_stream(0, CANCEL)],
            want: Want::Connection(PROTOCOL_ERROR),
        },
        Case {
            name: "6.4/2 RST_STREAM of a length other than 4",
            frames: || vec![post_open(1, &[]), frame(RST_STREAM, 0, 1, &[0, 0, 8])],
            want: Want::Connection(FRAME_SIZE_ERROR),
        },
        // --- 6.5 SETTINGS ---
        Case {
            name: "6.5/1 SETTINGS ACK with a payload",
            frames: || vec![frame(SETTINGS, ACK, 0, &[0, 4, 0, 0, 0, 1])],
            want: Want::Connection(FRAME_SIZE_ERROR),
        },
        Case {
            name: "6.5/2 SETTINGS on a stream",
            frames: || vec![frame(SETTINGS, 0, 1, &[])],
            want: Want::Connection(PROTOCOL_ERROR),
        },
        Case {
            name: "6.5/3 SETTINGS of a length not a multiple of 6",
            frames: || vec![frame(SETTINGS, 0, 0, &[0, 4, 0, 0])],
            want: Want::Connection(FRAME_SIZE_ERROR),
        },
        // --- 6.5.2 defined SETTINGS parameters ---
        Case {
            name: "6.5.2/1 SETTINGS_ENABLE_PUSH other than 0 or 1",
            frames: || vec![settings(&[(SETTINGS_ENABLE_PUSH, 2)])],
            want: Want::Connection(PROTOCOL_ERROR),
        },
        Case {
            name: "6.5.2/2 SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1",
            frames: || vec![settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, 1 << 31)])],
            want: Want::Connection(FLOW_CONTROL_ERROR),
        },
        Case {
            name: "6.5.2/3 SETTINGS_MAX_FRAME_SIZE below 2^14",
            frames: || vec![settings(&[(SETTINGS_MAX_FRAME_SIZE, 16383)])],
            want: Want::Connection(PROTOCOL_ERROR),
        },
        Case {
            name: "6.5.2/4 SETTINGS_MAX_FRAME_SIZE over 2^24-1",
            frames: || vec![settings(&[(SETTINGS_MAX_FRAME_SIZE, 1 << 24)])],
            want: Want::Connection(PROTOCOL_ERROR),
        },
        Case {
            name: "6.5.2/5 an unknown SETTINGS identifier is ignored",
            frames: || vec![settings(&[(0xff, 1)])],
            want: Want::Ignored,
        },
        // --- 6.7 PING ---
        Case {
            name: "6.7/3 PING on a stream",
            frames: || vec![frame(PING, 0, 1, &[0; 8])],
            want: Want::Connection(PROTOCOL_ERROR),
        },
        Case {
            name: "6.7/4 PING of a length other than 8",
            frames: || vec![frame(PING, 0, 0, &[0; 6])],
            want: Want::Connection(FRAME_SIZE_ERROR),
        },
        // --- 6.8 GOAWAY ---
        Case {
            name: "6.8/1 GOAWAY on a stream",
            frames: || vec![frame(GOAWAY, 0, 1, &[0; 8])],
            want: Want::Connection(PROTOCOL_ERROR),
        },
        // --- 6.9 WINDOW_UPDATE ---
        Case {
            name: "6.9/1 WINDOW_UPDATE of 0 on the connection",
            frames: || vec![window_update(0, 0)],
            want: Want::Connection(PROTOCOL_ERROR),
        },
        Case {
            name: "6.9/2 WINDOW_UPDATE of 0 on a stream",
            frames: || vec![post_open(1, &[]), window_update(1, 0)],
            want: Want::Stream(1, PROTOCOL),
        },
        Case {
            name: "6.9/3 WINDOW_UPDATE of a length other than 4",
            frames: || vec![frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1])],
            want: Want::Connection(FRAME_SIZE_ERROR),
        },
        // --- 6.9.1 the flow-control window ---
        Case {
            name: "6.9.1/2 the connection window over 2^31-1",
            frames: || vec![window_update(0, 0x7fff_ffff), window_update(0, 0x7fff_ffff)],
            want: Want::Connection(FLOW_CONTROL_ERROR),
        },
        Case {
            name: "6.9.1/3 a stream window over 2^31-1",
            frames: || {
                vec![
                    post_open(1, &[]),
                    window_update(1, 0x7fff_ffff),
                    window_update(1, 0x7fff_ffff),
                ]
            },
            want: Want::Stream(1, &[FLOW_CONTROL_ERROR]),
        },
        // --- 6.10 CONTINUATION ---
        Case {
            name: "6.10/1 HEADERS then several CONTINUATIONs",
            frames: || {
                let b = block(&get_fields("/api/x", &[("x-a", "1"), ("x-b", "2")]));
                vec![
                    frame(HEADERS, END_STREAM, 1, &b[..10]),
                    frame(CONTINUATION, 0, 1, &b[10..20]),
                    frame(CONTINUATION, END_HEADERS, 1, &b[20..]),
                ]
            },
            want: Want::Answer(1, 200),
        },
        Case {
            name: "6.10/2 a CONTINUATION followed by another frame",
            frames: || {
                let b = block(&get_fields("/api/x", &[]));
                vec![
                    frame(HEADERS, END_STREAM, 1, &b[..10]),
                    frame(CONTINUATION, 0, 1, &b[10..]),
                    frame(DATA, 0, 1, b"x"),
                ]
            },
            want: Want::Connection(PROTOCOL_ERROR),
        },
        Case {
            name: "6.10/3 a CONTINUATION on stream 0",
            frames: || {
                let b = block(&get_fields("/api/x", &[]));
                vec![
                    frame(HEADERS, END_STREAM, 1, &b[..10]),
                    frame(CONTINUATION, END_HEADERS, 0, &b[10..]),
                ]
            },
            want: Want::Connection(PROTOCOL_ERROR),
        },
        Case {
            name: "6.10/4 a CONTINUATION after HEADERS with END_HEADERS",
            frames: || {
                vec![
                    post_open(1, &[]),
                    frame(CONTINUATION, END_HEADERS, 1, &block(&[("x-a", "b")])),
                ]
            },
            want: Want::Connection(PROTOCOL_ERROR),
        },
        Case {
            name: "6.10/5 a CONTINUATION after a CONTINUATION with END_HEADERS",
            frames: || {
                let b = block(&get_fields("/api/x", &[]));
                vec![
                    frame(HEADERS, 0, 1, &b[..10]),
                    frame(CONTINUATION, END_HEADERS, 1, &b[10..]),
                    frame(CONTINUATION, END_HEADERS, 1, &block(&[("x-a", "b")])),
                ]
            },
            want: Want::Connection(PROTOCOL_ERROR),
        },
        Case {
            name: "6.10/6 a CONTINUATION after DATA",
            frames: || {
                vec![
                    post_open(1, &[]),
                    frame(DATA, 0, 1, b"x"),
                    frame(CONTINUATION, END_HEADERS, 1, &block(&[("x-a", "b")])),
                ]
            },
            want: Want::Connection(PROTOCOL_ERROR),
        },
        // --- 7 error codes ---
        Case {
            name: "7/2 RST_STREAM with an unknown error code",
            frames: || vec![post_open(1, &[]), rst_stream(1, 0xff)],
            want: Want::Ignored,
        },
        // --- 8.1 request/response exchange ---
        Case {
            name: "8.1/1 a second HEADERS without END_STREAM",
            frames: || {
                vec![
                    post_open(1, &[]),
                    frame(DATA, 0, 1, b"x"),
                    headers(1, &[("x-trailer", "a")], false),
                ]
            },
            want: Want::Stream(1, PROTOCOL),
        },
        // --- 8.1.2 header fields (RFC 9113 §8.2) ---
        Case {
            name: "8.1.2/1 an upper-case field name",
            frames: || vec![get_with(&[("X-Upper", "a")])],
            want: Want::Malformed(1),
        },
        Case {
            name: "8.1.2.1/1 an unknown pseudo-header",
            frames: || vec![get_with(&[(":unknown", "a")])],
            want: Want::Malformed(1),
        },
        Case {
            name: "8.1.2.1/2 a response pseudo-header in a request",
            frames: || vec![get_with(&[(":status", "200")])],
            want: Want::Malformed(1),
        },
        Case {
            name: "8.1.2.1/3 a pseudo-header in trailers",
            frames: || {
                vec![
                    post_open(1, &[]),
                    frame(DATA, 0, 1, b"x"),
                    headers(1, &[(":method", "POST")], true),
                ]
            },
            want: Want::Malformed(1),
        },
        Case {
            name: "8.1.2.1/4 a pseudo-header after a regular field",
            frames: || {
                vec![fields_only(&[
                    (":method", "GET"),
                    (":scheme", "https"),
                    ("x-a", "b"),
                    (":authority", "localhost"),
                    (":path", "/api/x"),
                ])]
            },
            want: Want::Malformed(1),
        },
        Case {
            name: "8.1.2.2/1 a connection-specific field",
            frames: || vec![get_with(&[("connection", "keep-alive")])],
            want: Want::Malformed(1),
        },
        Case {
            name: "8.1.2.2/2 TE other than trailers",
            frames: || vec![get_with(&[("te", "gzip")])],
            want: Want::Malformed(1),
        },
        Case {
            name: "8.1.2.3/1 an empty :path",
            frames: || {
                vec![fields_only(&[
                    (":method", "GET"),
                    (":scheme", "https"),
                    (":authority", "localhost"),
                    (":path", ""),
                ])]
            },
            want: Want::Malformed(1),
        },
        Case {
            name: "8.1.2.3/2 no :method",
            frames: || {
                vec![fields_only(&[
                    (":scheme", "https"),
                    (":authority", "localhost"),
                    (":path", "/api/x"),
                ])]
            },
            want: Want::Malformed(1),
        },
        Case {
            name: "8.1.2.3/3 no :scheme",
            frames: || {
                vec![fields_only(&[
                    (":method", "GET"),
                    (":authority", "localhost"),
                    (":path", "/api/x"),
                ])]
            },
            want: Want::Malformed(1),
        },
        Case {
            name: "8.1.2.3/4 no :path",
            frames: || {
                vec![fields_only(&[
                    (":method", "GET"),
                    (":scheme", "https"),
                    (":authority", "localhost"),
                ])]
            },
            want: Want::Malformed(1),
        },
        Case {
            name: "8.1.2.3/5 a duplicated :method",
            frames: || {
                vec![fields_only(&[
                    (":method", "GET"),
                    (":method", "POST"),
                    (":scheme", "https"),
                    (":path", "/api/x"),
                ])]
            },
            want: Want::Malformed(1),
        },
        Case {
            name: "8.1.2.3/6 a duplicated :scheme",
            frames: || {
                vec![fields_only(&[
                    (":method", "GET"),
                    (":scheme", "https"),
                    (":scheme", "http"),
                    (":path", "/api/x"),
                ])]
            },
            want: Want::Malformed(1),
        },
        Case {
            name: "8.1.2.3/7 a duplicated :path",
            frames: || {
                vec![fields_only(&[
                    (":method", "GET"),
                    (":scheme", "https"),
                    (":path", "/api/x"),
                    (":path", "/api/y"),
                ])]
            },
            want: Want::Malformed(1),
        },
        Case {
            name: "8.1.2.6/1 content-length unlike the one DATA frame",
            frames: || {
                vec![
                    post_open(1, &[("content-length", "1")]),
                    frame(DATA, END_STREAM, 1, b"abc"),
                ]
            },
            want: Want::Malformed(1),
        },
        Case {
            name: "8.1.2.6/2 content-length unlike the sum of the DATA frames",
            frames: || {
                vec![
                    post_open(1, &[("content-length", "4")]),
                    frame(DATA, 0, 1, b"abc"),
                    frame(DATA, END_STREAM, 1, b"abc"),
                ]
            },
            want: Want::Malformed(1),
        },
        // --- 8.2 server push ---
        Case {
            name: "8.2/1 a client's PUSH_PROMISE",
            frames: || {
                let mut payload = 2u32.to_be_bytes().to_vec();
                payload.extend(block(&get_fields("/api/x", &[])));
                vec![GET(), frame(PUSH_PROMISE, END_HEADERS, 1, &payload)]
            },
            want: Want::Connection(PROTOCOL_ERROR),
        },
        // --- RFC 9113 §8.2.1 field validity, §8.3.1 host and :authority ---
        Case {
            name: "9113 8.2.1 a field value starting with a space",
            frames: || vec![get_with(&[("x-a", " leading")])],
            want: Want::Malformed(1),
        },
        Case {
            name: "9113 8.2.1 a field value ending with a tab",
            frames: || vec![get_with(&[("x-a", "trailing\t")])],
            want: Want::Malformed(1),
        },
        Case {
            name: "9113 8.2.1 a field value with a NUL",
            frames: || vec![get_with(&[("x-a", "a\0b")])],
            want: Want::Malformed(1),
        },
        Case {
            name: "9113 8.2.1 a field value with CR LF",
            frames: || vec![get_with(&[("x-a", "a\r\nx-injected: 1")])],
            want: Want::Malformed(1),
        },
        Case {
            name: "9113 8.2.1 a field name with a space",
            frames: || vec![get_with(&[("x a", "b")])],
            want: Want::Malformed(1),
        },
        Case {
            name: "9113 8.2.1 a field name with a colon inside",
            frames: || vec![get_with(&[("x:a", "b")])],
            want: Want::Malformed(1),
        },
        Case {
            name: "9113 8.2.1 an empty field name",
            frames: || vec![get_with(&[("", "b")])],
            want: Want::Malformed(1),
        },
        Case {
            name: "9113 8.3.1 a host unlike :authority",
            frames: || vec![get_with(&[("host", "evil.example")])],
            want: Want::Malformed(1),
        },
        Case {
            name: "9113 8.3.1 CONNECT is not proxied",
            frames: || {
                vec![fields_only(&[
                    (":method", "CONNECT"),
                    (":authority", "localhost:443"),
                ])]
            },
            want: Want::Refused(1),
        },
    ]
}

/// Runs one case on a new connection; `Err` says what went wrong.
async fn run(env: &Env, case: &Case) -> Result<(), String> {
    let mut h2 = env.conn().await;
    for f in (case.frames)() {
        h2.send(&f).await;
    }
    let seen = |h2: &Conn| {
        format!(
            "{:?}",
            h2.seen
                .iter()
                .map(|f| (f.kind, f.flags, f.stream, f.error_code()))
                .collect::<Vec<_>>()
        )
    };
    match case.want {
        Want::Connection(code) => match h2.goaway().await {
            Some(c) if c == code => Ok(()),
            got => Err(format!(
                "want GOAWAY {code}, got {got:?}; frames {}",
                seen(&h2)
            )),
        },
        Want::Stream(stream, codes) => match h2.reset_or_goaway(stream).await {
            Some((_, c)) if codes.contains(&c) => Ok(()),
            got => Err(format!(
                "want RST_STREAM/GOAWAY {codes:?}, got {got:?}; frames {}",
                seen(&h2)
            )),
        },
        Want::Malformed(stream) => {
            let f = h2
                .until(|f| {
                    f.stream == stream && (f.kind == HEADERS || f.kind == RST_STREAM)
                        || f.kind == GOAWAY
                })
                .await;
            match f {
                Some(f) if f.kind == RST_STREAM || f.kind == GOAWAY => match f.error_code() {
                    Some(PROTOCOL_ERROR) => Ok(()),
                    c => Err(format!("want PROTOCOL_ERROR, got {c:?}")),
                },
                Some(f) => {
                    let status = status(&f.payload);
                    let mut body = Vec::new();
                    let mut ended = f.has(END_STREAM);
                    while !ended {
                        match h2.until(|g| g.stream == stream).await {
                            Some(g) if g.kind == DATA => {
                                body.extend_from_slice(&g.payload);
                                ended = g.has(END_STREAM);
                            }
                            _ => break,
                        }
                    }
                    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    if status == Some(400) && json["errno"] == 999 {
                        Ok(())
                    } else {
                        Err(format!(
                            "malformed request answered {status:?} {}",
                            String::from_utf8_lossy(&body)
                        ))
                    }
                }
                None => Err(format!("no answer; frames {}", seen(&h2))),
            }
        }
        Want::Answer(stream, want) => match h2.response(stream).await {
            Some((status, _)) if status == want => Ok(()),
            got => Err(format!("want {want}, got {got:?}; frames {}", seen(&h2))),
        },
        Want::Ignored => {
            h2.send(&frame(PING, 0, 0, b"ignored?")).await;
            let pong = |f: &Frame| f.kind == PING && f.has(ACK) && f.payload == b"ignored?";
            match h2.until(|f| pong(f) || f.kind == GOAWAY).await {
                Some(f) if pong(&f) => Ok(()),
                got => Err(format!("want the PING acknowledged, got {got:?}")),
            }
        }
        Want::Refused(stream) => {
            let f = h2
                .until(|f| f.stream == stream && (f.kind == HEADERS || f.kind == RST_STREAM))
                .await;
            match f {
                Some(f) if f.kind == RST_STREAM && f.error_code() == Some(PROTOCOL_ERROR) => Ok(()),
                Some(f) if f.kind == HEADERS => {
                    let status = status(&f.payload).unwrap_or(0);
                    let (_, body) = read_body(&mut h2, stream, f.has(END_STREAM)).await;
                    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    if (400..500).contains(&status) && json["errno"].is_u64() {
                        Ok(())
                    } else {
                        Err(format!(
                            "answered {status} {}",
                            String::from_utf8_lossy(&body)
                        ))
                    }
                }
                got => Err(format!("want a refusal, got {got:?}")),
            }
        }
    }
}

/// The rest of a response body on `stream` (`ended`: the head had END_STREAM).
async fn read_body(h2: &mut Conn, stream: u32, mut ended: bool) -> (bool, Vec<u8>) {
    let mut body = Vec::new();
    while !ended {
        match h2.until(|g| g.stream == stream).await {
            Some(g) if g.kind == DATA => {
                body.extend_from_slice(&g.payload);
                ended = g.has(END_STREAM);
            }
            _ => break,
        }
    }
    (ended, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2spec_cases() {
    let env = Env::start().await;
    let mut failures = Vec::new();
    let mut cases = cases();
    for case in &mut cases {
        if let Some((_, instead)) = H2_DEVIATIONS.iter().find(|(name, _)| *name == case.name) {
            case.want = *instead;
        }
    }
    assert!(
        H2_DEVIATIONS
            .iter()
            .all(|(name, _)| cases.iter().any(|c| c.name == *name)),
        "a deviation names no case"
    );
    for case in &cases {
        if let Err(e) = run(&env, case).await {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

// === cases that need more than one exchange ===

/// 3.5: the server's preface is a SETTINGS frame, and a bad client preface ends the connection.
#[tokio::test]
async fn connection_preface() {
    let env = Env::start().await;
    let mut h2 = env.raw(&[]).await;
    let first = h2.next().await.expect("a first frame");
    assert_eq!((first.kind, first.has(ACK)), (SETTINGS, false), "{first:?}");

    let mut tls = tls_connect(env.addr(), &env.ca_pem, b"h2").await;
    tokio::io::AsyncWriteExt::write_all(&mut tls, b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
        .await
        .unwrap();
    let mut bad = H2::start(tls, &[]).await;
    assert!(
        bad.closed_within(Duration::from_secs(5)).await,
        "a bad preface must end the connection"
    );
}

/// 6.5.3 and 6.7: SETTINGS are acknowledged, PINGs answered with the same payload, a PING ACK
/// gets no answer.
#[tokio::test]
async fn settings_and_ping() {
    let env = Env::start().await;
    let mut h2 = env.conn().await;
    h2.send(&settings(&[
        (SETTINGS_INITIAL_WINDOW_SIZE, 100),
        (SETTINGS_INITIAL_WINDOW_SIZE, 65535),
    ]))
    .await;
    let ack = h2
        .until(|f| f.kind == SETTINGS)
        .await
        .expect("SETTINGS ACK");
    assert!(ack.has(ACK) && ack.payload.is_empty(), "{ack:?}");

    h2.send(&frame(PING, ACK, 0, b"unasked!")).await;
    h2.send(&frame(PING, 0, 0, b"12345678")).await;
    let pong = h2.until(|f| f.kind == PING).await.expect("PING ACK");
    assert!(pong.has(ACK), "{pong:?}");
    assert_eq!(pong.payload, b"12345678", "the PING ACK was answered");
    // Processed in order: the last INITIAL_WINDOW_SIZE (65535) holds, so a request is answered.
    h2.send(&headers(1, &get_fields("/api/x", &[]), true)).await;
    assert_eq!(h2.response(1).await.map(|r| r.0), Some(200));
}

/// 6.9.1 and 6.9.2: with an initial window of 1 the server sends at most 1 byte; after
/// SETTINGS raise it (all streams adjusted) and WINDOW_UPDATE, the rest follows. A window made
/// negative by SETTINGS is tracked.
#[tokio::test]
async fn flow_control_windows() {
    let env = Env::start().await;
    let mut h2 = env.raw(&[(SETTINGS_INITIAL_WINDOW_SIZE, 1)]).await;
    h2.handshake().await;
    h2.send(&headers(1, &get_fields("/api/x", &[]), true)).await;
    let head = h2
        .until(|f| f.stream == 1 && f.kind == HEADERS)
        .await
        .expect("head");
    assert_eq!(status(&head.payload), Some(200));
    let first = h2
        .until(|f| f.stream == 1 && f.kind == DATA)
        .await
        .expect("DATA");
    assert!(
        first.payload.len() <= 1,
        "{} bytes over a window of 1",
        first.payload.len()
    );
    // The body is `{"ok":true}`: 11 bytes, 1 sent. Raising the initial window adjusts the
    // stream's window (to 20 - 1 = 19): the rest comes.
    h2.send(&settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, 20)]))
        .await;
    let mut body = first.payload.clone();
    while body.len() < 11 {
        let f = h2
            .until(|f| f.stream == 1 && f.kind == DATA)
            .await
            .expect("more DATA");
        body.extend_from_slice(&f.payload);
    }
    assert_eq!(body, br#"{"ok":true}"#);

    // Negative window: 5 bytes out of 5, then the initial window drops to 3 (window -3), a
    // WINDOW_UPDATE of 4 leaves 1: exactly one more byte may come.
    let mut h2 = env.raw(&[(SETTINGS_INITIAL_WINDOW_SIZE, 5)]).await;
    h2.handshake().await;
    h2.send(&headers(1, &get_fields("/api/x", &[]), true)).await;
    let mut got = 0;
    while got < 5 {
        let f = h2
            .until(|f| f.stream == 1 && f.kind == DATA)
            .await
            .expect("DATA");
        got += f.payload.len();
    }
    h2.send(&settings(&[(SETTINGS_INITIAL_WINDOW_SIZE, 2)]))
        .await;
    h2.until(|f| f.kind == SETTINGS && f.has(ACK))
        .await
        .expect("ACK");
    h2.send(&window_update(1, 4)).await;
    let f = h2
        .until(|f| f.stream == 1 && f.kind == DATA)
        .await
        .expect("DATA");
    assert_eq!(f.payload.len(), 1, "the window was -3 + 4 = 1");
}

/// 5.1.2: streams over SETTINGS_MAX_CONCURRENT_STREAMS (10 here) are refused one by one.
#[tokio::test]
async fn concurrent_stream_limit() {
    let env = Env::start().await;
    let mut h2 = env.raw(&[]).await;
    h2.handshake().await;
    let advertised = h2
        .seen
        .iter()
        .find(|f| f.kind == SETTINGS && !f.has(ACK))
        .and_then(|f| {
            f.payload
                .chunks(6)
                .find(|c| u16::from_be_bytes([c[0], c[1]]) == SETTINGS_MAX_CONCURRENT_STREAMS)
                .map(|c| u32::from_be_bytes([c[2], c[3], c[4], c[5]]))
        });
    assert_eq!(advertised, Some(10));
    for i in 0..11 {
        h2.send(&post_open(1 + 2 * i, &[])).await;
    }
    let (kind, code) = h2
        .reset_or_goaway(21)
        .await
        .expect("the 11th stream refused");
    assert_eq!(kind, RST_STREAM);
    assert!(
        [PROTOCOL_ERROR, REFUSED_STREAM].contains(&code),
        "code {code}"
    );
}

/// 6.8 and 7: a client's GOAWAY (even with an unknown code) lets the streams it covers finish;
/// the server's own GOAWAY on shutdown names the last stream it processed.
#[tokio::test]
async fn goaway_both_ways() {
    let env = Env::start().await;
    let mut h2 = env.conn().await;
    h2.send(&headers(1, &get_fields("/api/x", &[]), true)).await;
    let mut goaway = 1u32.to_be_bytes().to_vec();
    goaway.extend(0xffu32.to_be_bytes());
    h2.send(&frame(GOAWAY, 0, 0, &goaway)).await;
    assert_eq!(h2.response(1).await.map(|r| r.0), Some(200));

    let mut h2 = env.conn().await;
    h2.send(&headers(1, &get_fields("/api/x", &[]), true)).await;
    assert_eq!(h2.response(1).await.map(|r| r.0), Some(200));
    env.gw.begin_shutdown();
    let f = h2
        .until(|f| f.kind == GOAWAY)
        .await
        .expect("GOAWAY on shutdown");
    assert_eq!(f.error_code(), Some(NO_ERROR));
    let last = u32::from_be_bytes([f.payload[0], f.payload[1], f.payload[2], f.payload[3]]);
    assert!(last == 1 || last == 0x7fff_ffff, "last stream id {last}");
}

/// The gateway's own errors over HTTP/2 are errno JSON too (no route here).
#[tokio::test]
async fn gateway_errors_are_errno_json_over_h2() {
    let env = Env::start().await;
    let mut h2 = env.conn().await;
    h2.send(&headers(1, &get_fields("/nowhere", &[]), true))
        .await;
    let (status, body) = h2.response(1).await.expect("an answer");
    assert_eq!(status, 404);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (v["code"].as_u64(), v["errno"].as_u64()),
        (Some(404), Some(999)),
        "{v}"
    );
}
