//! The client against a real server that is really stopped and started
//! again: calls, notifications, subscriptions, the state watch, timeouts,
//! the offline queue, reconnecting.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{url, within};
use serde_json::json;
use ws_rpc::{
    Backoff, Client, ClientConfig, ClientError, ConnectionState, Context, Router, RpcError, Server,
    ServerHandle, SubscriptionEnd, SubscriptionItem,
};

fn router(calls: Arc<AtomicUsize>) -> Router {
    Router::new()
        .method("add", |(a, b): (i64, i64), _cx| async move {
            Ok::<_, RpcError>(a + b)
        })
        .method("hang", |(): (), _cx| async move {
            std::future::pending::<()>().await;
            Ok::<_, RpcError>(())
        })
        .method("record", move |(n,): (u64,), _cx| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, RpcError>(n)
            }
        })
        .method("fail", |(): (), _cx| async move {
            Err::<(), _>(RpcError::new(4000, "nope").with_data(&json!({"why": "testing"})))
        })
        .method("push", |(method,): (String,), cx: Context| async move {
            cx.notify(&method, &json!({"pushed": true})).unwrap();
            Ok::<_, RpcError>(())
        })
        .subscription(
            "subscribe_n",
            "n",
            "unsubscribe_n",
            |(): (), sink: ws_rpc::SubscriptionSink, _cx| async move {
                for n in 0u64.. {
                    if sink.send_wait(&n).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            },
        )
}

/// A server on `addr` (port 0 for a new one) that can be stopped and
/// started again on the same address.
async fn start(addr: SocketAddr, calls: Arc<AtomicUsize>) -> (SocketAddr, ServerHandle) {
    let listener = loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let addr = listener.local_addr().unwrap();
    let server = Server::builder().build(router(calls));
    let handle = server.handle();
    tokio::spawn(server.serve(listener));
    (addr, handle)
}

async fn stop(handle: ServerHandle) {
    handle.shutdown();
    within(handle.closed()).await;
}

fn quick() -> ClientConfig {
    let mut c = ClientConfig::default();
    c.backoff.initial = Duration::from_millis(50);
    c.backoff.max = Duration::from_millis(200);
    c
}

async fn wait_for(client: &Client, want: fn(&ConnectionState) -> bool) {
    let mut state = client.state();
    within(async {
        loop {
            if want(&state.borrow_and_update()) {
                return;
            }
            state.changed().await.unwrap();
        }
    })
    .await;
}

#[tokio::test]
async fn calls_errors_and_timeouts() {
    let (addr, _s) = start("127.0.0.1:0".parse().unwrap(), Default::default()).await;
    let client = within(Client::builder(url(addr)).connect()).await.unwrap();
    assert_eq!(*client.state().borrow(), ConnectionState::Open);
    let sum: i64 = client.request("add", (2, 3)).await.unwrap();
    assert_eq!(sum, 5);
    match client.request::<(), _>("fail", ()).await {
        Err(ClientError::Rpc(e)) => {
            assert_eq!(e.code, 4000);
            assert_eq!(e.data.unwrap().get(), r#"{"why":"testing"}"#);
        }
        other => panic!("{other:?}"),
    }
    match client.request::<i64, _>("nope", ()).await {
        Err(ClientError::Rpc(e)) => assert_eq!(e.code, -32601),
        other => panic!("{other:?}"),
    }
    let e = client
        .request_with_timeout::<(), _>("hang", (), Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Timeout), "{e:?}");
    assert!(matches!(
        client.request::<String, _>("add", (1, 2)).await,
        Err(ClientError::Decode(_))
    ));
    // Many calls at once, each matched to its own answer.
    let calls = (0..100).map(|i| {
        let c = client.clone();
        async move { c.request::<i64, _>("add", (i, 1000)).await.unwrap() }
    });
    let sums = futures_util::future::join_all(calls).await;
    assert_eq!(sums, (0..100).map(|i| i + 1000).collect::<Vec<_>>());
}

#[tokio::test]
async fn notifications_from_the_server_as_streams() {
    let (addr, _s) = start("127.0.0.1:0".parse().unwrap(), Default::default()).await;
    let client = within(Client::builder(url(addr)).connect()).await.unwrap();
    let mut a = client.notifications::<serde_json::Value>("news");
    let mut b = client.notifications::<serde_json::Value>("news");
    client.request::<(), _>("push", ["news"]).await.unwrap();
    assert_eq!(
        within(a.next()).await.unwrap().unwrap(),
        json!({"pushed": true})
    );
    assert_eq!(
        within(b.next()).await.unwrap().unwrap(),
        json!({"pushed": true})
    );
    client.notify("record", [7]).await.unwrap();
}

#[tokio::test]
async fn a_subscription_streams_and_unsubscribes() {
    let (addr, _s) = start("127.0.0.1:0".parse().unwrap(), Default::default()).await;
    let client = within(Client::builder(url(addr)).connect()).await.unwrap();
    let mut sub = client
        .subscribe::<u64, _>("subscribe_n", (), "unsubscribe_n")
        .await
        .unwrap();
    for want in 0..5 {
        assert_eq!(within(sub.next()).await, Some(SubscriptionItem::Item(want)));
    }
    within(sub.unsubscribe()).await.unwrap();
    assert_eq!(
        within(sub.next()).await,
        Some(SubscriptionItem::Ended(SubscriptionEnd::Unsubscribed))
    );
    assert_eq!(within(sub.next()).await, None);
}

#[tokio::test]
async fn a_dropped_connection_fails_what_was_sent_keeps_what_was_queued_and_resubscribes() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (addr, server) = start("127.0.0.1:0".parse().unwrap(), calls.clone()).await;
    let reconnects = Arc::new(AtomicUsize::new(0));
    let client = within(
        Client::builder(url(addr))
            .config(quick())
            .on_reconnect({
                let reconnects = reconnects.clone();
                move |c: Client| {
                    let reconnects = reconnects.clone();
                    async move {
                        // The hook's calls go out before the queued ones.
                        let _: i64 = c.request("add", (0, 0)).await.unwrap();
                        reconnects.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
            .connect(),
    )
    .await
    .unwrap();
    let mut sub = client
        .subscribe::<u64, _>("subscribe_n", (), "unsubscribe_n")
        .await
        .unwrap();
    assert!(matches!(
        within(sub.next()).await,
        Some(SubscriptionItem::Item(0))
    ));
    // A call in flight when the server goes away.
    let hanging = tokio::spawn({
        let c = client.clone();
        async move { c.request::<(), _>("hang", ()).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop(server).await;
    let e = within(hanging).await.unwrap().unwrap_err();
    assert!(matches!(e, ClientError::Disconnected), "{e:?}");
    wait_for(&client, |s| {
        matches!(s, ConnectionState::Reconnecting { .. })
    })
    .await;
    // Calls while away wait in the queue, in order.
    let queued: Vec<_> = (0..5u64)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move { c.request::<u64, _>("record", [i]).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let (_, server) = start(addr, calls.clone()).await;
    wait_for(&client, |s| *s == ConnectionState::Open).await;
    for (i, q) in queued.into_iter().enumerate() {
        assert_eq!(within(q).await.unwrap().unwrap(), i as u64);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5, "each queued call ran once");
    assert_eq!(reconnects.load(Ordering::SeqCst), 1);
    // The subscription was made again, and says so.
    let mut resubscribed = false;
    let mut items_after = 0;
    while items_after < 3 {
        match within(sub.next()).await.unwrap() {
            SubscriptionItem::Resubscribed => resubscribed = true,
            SubscriptionItem::Item(_) if resubscribed => items_after += 1,
            SubscriptionItem::Item(_) => {}
            other => panic!("{other:?}"),
        }
    }
    drop(server);
}

#[tokio::test]
async fn the_offline_queue_is_bounded_and_a_dropped_call_leaves_it() {
    let (addr, server) = start("127.0.0.1:0".parse().unwrap(), Default::default()).await;
    let mut config = quick();
    config.queue_items = 3;
    let client = within(Client::builder(url(addr)).config(config).connect())
        .await
        .unwrap();
    stop(server).await;
    wait_for(&client, |s| {
        matches!(s, ConnectionState::Reconnecting { .. })
    })
    .await;
    let waiting: Vec<_> = (0..3)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move { c.request::<i64, _>("add", (i, 0)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let e = client.request::<i64, _>("add", (9, 9)).await.unwrap_err();
    assert!(matches!(e, ClientError::QueueFull), "{e:?}");
    // A cancelled call leaves the queue: there is room again.
    waiting[0].abort();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let extra = tokio::spawn({
        let c = client.clone();
        async move { c.request::<i64, _>("add", (40, 2)).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (_, _server) = start(addr, Default::default()).await;
    assert_eq!(within(extra).await.unwrap().unwrap(), 42);
    for (i, w) in waiting.into_iter().enumerate().skip(1) {
        assert_eq!(within(w).await.unwrap().unwrap(), i as i64);
    }
}

#[tokio::test]
async fn close_fails_everything_and_ends_the_streams() {
    let (addr, _s) = start("127.0.0.1:0".parse().unwrap(), Default::default()).await;
    let client = within(Client::builder(url(addr)).connect()).await.unwrap();
    let mut sub = client
        .subscribe::<u64, _>("subscribe_n", (), "unsubscribe_n")
        .await
        .unwrap();
    let hanging = tokio::spawn({
        let c = client.clone();
        async move { c.request::<(), _>("hang", ()).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    client.close();
    let e = within(hanging).await.unwrap().unwrap_err();
    assert!(
        matches!(e, ClientError::Closed | ClientError::Disconnected),
        "{e:?}"
    );
    wait_for(&client, |s| *s == ConnectionState::Closed).await;
    loop {
        match within(sub.next()).await {
            Some(SubscriptionItem::Ended(why)) => {
                assert_eq!(why, SubscriptionEnd::Closed);
                break;
            }
            Some(SubscriptionItem::Item(_)) => continue,
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        client.request::<i64, _>("add", (1, 1)).await,
        Err(ClientError::Closed)
    ));
}

#[tokio::test]
async fn without_reconnect_the_first_failure_is_returned() {
    let mut config = ClientConfig::default();
    config.reconnect = false;
    let e = within(
        Client::builder("ws://127.0.0.1:1/")
            .config(config)
            .connect(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, ws_net::ConnectError::Io(_)), "{e:?}");
}

#[test]
fn backoff_grows_caps_and_jitters() {
    let b = Backoff::default();
    for attempt in 0..10 {
        let d = b.delay(attempt).as_secs_f64();
        let base = (1.0 * 2f64.powi(attempt as i32)).min(5.0);
        assert!(d >= base * 0.5 && d <= base * 1.5, "{attempt}: {d}");
    }
    let mut exact = Backoff::default();
    exact.jitter = 0.0;
    assert_eq!(exact.delay(0), Duration::from_secs(1));
    assert_eq!(exact.delay(2), Duration::from_secs(4));
    assert_eq!(exact.delay(9), Duration::from_secs(5));
}

/// Settings at their extremes give delays, never a panic: a `max` of
/// `Duration::MAX` ("no cap"), a huge or non-numeric factor or jitter.
#[test]
fn backoff_at_the_extremes_still_gives_a_delay() {
    let mut b = Backoff::default();
    b.max = Duration::MAX;
    b.factor = 1e300;
    for attempt in [0, 1, 5, 64, u32::MAX] {
        assert!(b.delay(attempt) >= Duration::from_millis(500), "{attempt}");
    }
    b.factor = f64::NAN;
    b.jitter = f64::NAN;
    assert_eq!(b.delay(3), Duration::from_secs(1));
    b.factor = f64::INFINITY;
    b.jitter = 1.0;
    assert!(b.delay(2) > Duration::ZERO);
    b.initial = Duration::MAX;
    b.factor = 2.0;
    b.jitter = 0.0;
    assert!(b.delay(0) > Duration::from_secs(1 << 60));
}
