import assert from "node:assert/strict";
import { test } from "node:test";
import { COLUMN_BY_ID, columnsFor, defaultColumns, sanitizeColumns } from "../../../ui/js/lib/activity-columns.js";

test("the node column is offered, and shown by default, only for the fleet's history", () => {
  assert.ok(!columnsFor().some((c) => c.id === "node"));
  assert.ok(!defaultColumns().includes("node"));
  assert.equal(columnsFor(true)[0].id, "node");
  assert.equal(defaultColumns(true)[0], "node");
});

test("a saved node column is dropped outside fleet mode and kept inside it", () => {
  assert.deepEqual(sanitizeColumns(["node", "model"]), ["model"]);
  assert.deepEqual(sanitizeColumns(["node", "model"], true), ["node", "model"]);
  assert.deepEqual(sanitizeColumns(["node"]), defaultColumns());
});

test("the node cell names the peer a front node forwarded to", () => {
  const node = COLUMN_BY_ID.node;
  assert.equal(node.text({ node: "gpu-a", peer: "" }), "gpu-a");
  assert.equal(node.text({ node: "front", peer: "gpu-b" }), "front → gpu-b");
});
