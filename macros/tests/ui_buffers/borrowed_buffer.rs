// A borrowed buffer is the first mistake newcomers make: the error says to pass an owned one.
use ringloop::net::TcpStream;

async fn send(stream: &TcpStream, data: &[u8]) {
    let (_res, _buf) = stream.write_all(data).await;
}

async fn receive(stream: &TcpStream, buf: &mut [u8]) {
    let (_res, _buf) = stream.read(buf).await;
}

fn main() {
    let _ = (send, receive);
}
