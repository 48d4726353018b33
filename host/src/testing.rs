//! What the unit tests share.

use socket2::Socket;
use std::net::{TcpListener, TcpStream};

/// A connected loopback pair: our end (accepted, as a socket2 socket, still
/// blocking) and its native peer.
pub(crate) fn loopback_pair() -> (Socket, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback listener");
    let peer = TcpStream::connect(listener.local_addr().expect("the listener's address"))
        .expect("connect to the listener");
    let (ours, _) = listener.accept().expect("accept the connection");
    (Socket::from(ours), peer)
}
