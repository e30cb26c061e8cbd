"""E-commerce order flow: one order service, three independent services.

    orders --> payment      (group "payment")      --> payments
           --> inventory    (group "inventory")    --> inventory
           --> notification (group "notification") --> notifications

Each service is its own consumer group, so each sees every order (fan-out)
and keeps its own committed offsets (decoupling): the notification service
is stopped while orders keep coming, then catches up from where it left
off. An analytics consumer added at the end replays all history.
"""

import threading

from examples.common import Service, arguments, broker, ensure_topics, envelope, parse, producer, wait_until


def run(bootstrap: str, orders: int = 60, say=print) -> dict:
    ensure_topics(bootstrap, {t: (3, {}) for t in ("orders", "payments", "inventory", "notifications")})
    out = producer(bootstrap)
    lock = threading.Lock()
    notified: list[str] = []

    def payment(msg):
        order = parse(msg.value())["payload"]
        out.produce("payments", key=msg.key(), value=envelope(
            "PaymentProcessed", {"order_id": order["order_id"], "amount": order["total"]}))
        out.poll(0)

    def inventory(msg):
        order = parse(msg.value())["payload"]
        out.produce("inventory", key=msg.key(), value=envelope(
            "StockReserved", {"order_id": order["order_id"], "items": order["items"]}))
        out.poll(0)

    def notification(msg):
        order = parse(msg.value())["payload"]
        with lock:
            notified.append(order["order_id"])
        out.produce("notifications", key=msg.key(), value=envelope(
            "OrderConfirmationSent", {"order_id": order["order_id"], "email": order["email"]}))
        out.poll(0)

    services = {name: Service(bootstrap, name, ["orders"], fn).start()
                for name, fn in (("payment", payment), ("inventory", inventory),
                                 ("notification", notification))}
    shop = producer(bootstrap)

    def place(first, last):
        for i in range(first, last):
            order_id = f"order-{i:05d}"
            shop.produce("orders", key=order_id, value=envelope("OrderPlaced", {
                "order_id": order_id, "customer": f"customer-{i % 7}",
                "email": f"customer-{i % 7}@example.com", "items": [{"sku": "SKU-1", "qty": 1 + i % 3}],
                "total": round(10 + i * 1.5, 2)}))
        shop.flush(30)

    half = orders // 2
    place(0, half)
    say(f"placed {half} orders; payment, inventory and notification each consume them")
    wait_until(lambda: services["notification"].handled >= half)
    services["notification"].stop()
    say("notification service stopped; orders keep flowing")
    place(half, orders)
    wait_until(lambda: services["payment"].handled >= orders and services["inventory"].handled >= orders)
    say(f"payment and inventory handled all {orders}; notification is {orders - half} behind")
    services["notification"].start()
    wait_until(lambda: len(set(notified)) >= orders)
    say(f"notification service restarted and caught up from its committed offset: "
        f"{len(set(notified))} of {orders} orders notified")
    replayed: list[str] = []
    analytics = Service(bootstrap, "analytics", ["orders"],
                        lambda m: replayed.append(parse(m.value())["payload"]["order_id"])).start()
    wait_until(lambda: len(replayed) >= orders)
    say(f"analytics, added last, replayed all history: {len(replayed)} orders")
    for s in [*services.values(), analytics]:
        s.stop()
    out.flush(30)
    return {"orders": orders, "payments": services["payment"].handled,
            "inventory": services["inventory"].handled, "notified": sorted(set(notified)),
            "analytics": sorted(replayed)}


def main() -> None:
    args = arguments("E-commerce order flow on Kafka topics").parse_args()
    with broker(args.bootstrap_server) as bootstrap:
        run(bootstrap)


if __name__ == "__main__":
    main()
