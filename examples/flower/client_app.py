"""An ordinary Flower 1.42 ClientApp (Message API): nothing in it knows about fedledger."""

from __future__ import annotations

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from task import build, load_partition, test, train  # type: ignore[import-not-found]

app = ClientApp()


def _setup(msg: Message, context: Context):
    model = build((64,), 10)
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    pid, parts = int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    return model, load_partition(pid, parts)


@app.train()
def fit(msg: Message, context: Context) -> Message:
    model, (train_data, _) = _setup(msg, context)
    loss = train(model, train_data, epochs=int(context.run_config.get("local-epochs", 1)),
                 lr=float(msg.content["config"]["lr"]))
    metrics = MetricRecord({"train_loss": loss, "num-examples": len(train_data[1])})
    return Message(RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    model, (_, test_data) = _setup(msg, context)
    loss, acc = test(model, test_data)
    metrics = MetricRecord({"eval_loss": loss, "eval_acc": acc, "num-examples": len(test_data[1])})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)
