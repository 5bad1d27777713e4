//! `probe echo`: the server side of the echo checks. Each TCP connection and
//! each UDP datagram carries a token; the answer is one [`EchoReply`] JSON line
//! naming this server and the source address it saw, so the client can tell
//! which backend answered and whether the path translated its address.
//!
//! It serves until killed: a connection that errs or stalls ends only itself.

use conformance_contract::pods::EchoReply;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

/// The longest token read (longer input is cut here).
pub const MAX_TOKEN: usize = 256;
/// How long a TCP connection may take to send its token, and to take the reply.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Bound sockets, not yet serving: binding is separate so port 0 can be asked
/// for (tests) and the real port reported before serving starts.
pub struct Echo {
    name: Arc<str>,
    tcp: Option<TcpListener>,
    udp: Option<UdpSocket>,
}

impl Echo {
    /// Binds `ip:tcp` and/or `ip:udp` (at least one). The error names what failed.
    pub fn bind(
        name: &str,
        ip: IpAddr,
        tcp: Option<u16>,
        udp: Option<u16>,
    ) -> Result<Echo, String> {
        if tcp.is_none() && udp.is_none() {
            return Err("echo needs a TCP port, a UDP port or both".into());
        }
        let tcp = tcp
            .map(|port| {
                let addr = SocketAddr::new(ip, port);
                TcpListener::bind(addr).map_err(|e| format!("bind tcp {addr}: {e}"))
            })
            .transpose()?;
        let udp = udp
            .map(|port| {
                let addr = SocketAddr::new(ip, port);
                UdpSocket::bind(addr).map_err(|e| format!("bind udp {addr}: {e}"))
            })
            .transpose()?;
        Ok(Echo {
            name: name.into(),
            tcp,
            udp,
        })
    }

    pub fn tcp_port(&self) -> Option<u16> {
        self.tcp
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
    }

    pub fn udp_port(&self) -> Option<u16> {
        self.udp
            .as_ref()
            .and_then(|s| s.local_addr().ok())
            .map(|a| a.port())
    }

    /// The start line: `echo: NAME serving tcp 8080, udp 8081`.
    pub fn banner(&self) -> String {
        let ports: Vec<String> = [("tcp", self.tcp_port()), ("udp", self.udp_port())]
            .into_iter()
            .filter_map(|(proto, port)| port.map(|p| format!("{proto} {p}")))
            .collect();
        format!("echo: {} serving {}", self.name, ports.join(", "))
    }

    /// Serves in background threads (one accepting TCP, one answering UDP)
    /// that run as long as the process does.
    pub fn spawn(self) {
        if let Some(listener) = self.tcp {
            let name = self.name.clone();
            std::thread::spawn(move || serve_tcp(&listener, &name));
        }
        if let Some(socket) = self.udp {
            let name = self.name.clone();
            std::thread::spawn(move || serve_udp(&socket, &name));
        }
    }

    /// Serves forever.
    pub fn serve(self) -> ! {
        self.spawn();
        loop {
            std::thread::park();
        }
    }
}

/// The answer to `token` from `peer`, as one JSON line.
pub fn reply(name: &str, peer: SocketAddr, token: &str) -> String {
    let reply = EchoReply {
        server: name.to_string(),
        peer: canonical(peer).to_string(),
        token: token.to_string(),
    };
    serde_json::to_string(&reply).expect("an echo reply serializes") + "\n"
}

/// An IPv4 peer seen through a dual-stack socket as `::ffff:a.b.c.d` is
/// reported as the IPv4 address it is.
fn canonical(peer: SocketAddr) -> SocketAddr {
    SocketAddr::new(peer.ip().to_canonical(), peer.port())
}

/// The token in what a client sent: up to the first newline, at most
/// [`MAX_TOKEN`] bytes, trimmed.
fn token_of(bytes: &[u8]) -> String {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = &line[..line.len().min(MAX_TOKEN)];
    String::from_utf8_lossy(line).trim().to_string()
}

fn serve_tcp(listener: &TcpListener, name: &Arc<str>) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let name = name.clone();
                // A thread that cannot be spawned drops its connection (the
                // client sees it closed); the next one may fare better.
                let _ = std::thread::Builder::new()
                    .name("echo-conn".into())
                    .spawn(move || answer_tcp(stream, &name));
            }
            // Out of descriptors, or a connection reset before accept: not
            // this server's end; a pause keeps a persistent error from spinning.
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// One connection: read one line, answer, close. Any error just ends it.
fn answer_tcp(mut stream: TcpStream, name: &str) {
    let Ok(peer) = stream.peer_addr() else {
        return;
    };
    if stream.set_read_timeout(Some(IO_TIMEOUT)).is_err()
        || stream.set_write_timeout(Some(IO_TIMEOUT)).is_err()
    {
        return;
    }
    let mut buf = [0u8; MAX_TOKEN + 1];
    let mut len = 0;
    while len < MAX_TOKEN && !buf[..len].contains(&b'\n') {
        match stream.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // Timed out or reset before a line came: nothing to answer.
            Err(_) => return,
        }
    }
    if len == 0 {
        return;
    }
    let _ = stream.write_all(reply(name, peer, &token_of(&buf[..len])).as_bytes());
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

fn serve_udp(socket: &UdpSocket, name: &str) {
    let mut buf = [0u8; 2048];
    loop {
        match socket.recv_from(&mut buf) {
            Ok((n, peer)) => {
                let _ = socket.send_to(reply(name, peer, &token_of(&buf[..n])).as_bytes(), peer);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::Ipv4Addr;

    #[test]
    fn echo_answers_a_tcp_line_and_a_udp_datagram_with_name_peer_and_token() {
        let echo = Echo::bind("echo-t", Ipv4Addr::LOCALHOST.into(), Some(0), Some(0)).unwrap();
        let (tcp, udp) = (echo.tcp_port().unwrap(), echo.udp_port().unwrap());
        assert_eq!(
            echo.banner(),
            format!("echo: echo-t serving tcp {tcp}, udp {udp}")
        );
        echo.spawn();

        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, tcp)).unwrap();
        stream.write_all(b"  abc123 \n").unwrap();
        let mut line = String::new();
        std::io::BufReader::new(&stream)
            .read_line(&mut line)
            .unwrap();
        let reply: EchoReply = serde_json::from_str(&line).unwrap();
        assert_eq!(reply.server, "echo-t");
        assert_eq!(reply.token, "abc123");
        assert_eq!(reply.peer, stream.local_addr().unwrap().to_string());

        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        socket
            .send_to(b"tok-u", (Ipv4Addr::LOCALHOST, udp))
            .unwrap();
        let mut buf = [0u8; 1024];
        let (n, from) = socket.recv_from(&mut buf).unwrap();
        assert_eq!(from.port(), udp);
        let reply: EchoReply = serde_json::from_slice(&buf[..n]).unwrap();
        assert_eq!(
            (reply.server.as_str(), reply.token.as_str()),
            ("echo-t", "tok-u")
        );
        assert_eq!(reply.peer, socket.local_addr().unwrap().to_string());
    }

    #[test]
    fn a_token_is_cut_at_its_newline_and_its_limit() {
        assert_eq!(token_of(b"a\nb"), "a");
        assert_eq!(token_of(&[b'x'; 300]).len(), MAX_TOKEN);
        assert!(Echo::bind("e", Ipv4Addr::LOCALHOST.into(), None, None).is_err());
    }
}
