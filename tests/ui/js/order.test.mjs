import assert from "node:assert/strict";
import { test } from "node:test";
import { mergeOrder, moveItem } from "../../../ui/js/lib/order.js";

test("a saved order keeps its order, drops gone ids and appends new ones", () => {
  assert.deepEqual(mergeOrder(["c", "a"], ["a", "b", "c"]), ["c", "a", "b"]);
  assert.deepEqual(mergeOrder(["gone", "b"], ["a", "b"]), ["b", "a"]);
  assert.deepEqual(mergeOrder(["b", "b", "a"], ["a", "b"]), ["b", "a"]);
  assert.deepEqual(mergeOrder(null, ["a", "b"]), ["a", "b"]);
  assert.deepEqual(mergeOrder("junk", ["a", "b"]), ["a", "b"]);
});

test("moving an item shifts the ones between, and keeps duplicates apart", () => {
  assert.deepEqual(moveItem(["a", "b", "c"], 2, 0), ["c", "a", "b"]);
  assert.deepEqual(moveItem(["a", "b", "c"], 0, 2), ["b", "c", "a"]);
  assert.deepEqual(moveItem(["x", "y", "x"], 0, 1), ["y", "x", "x"]);
  const list = ["a", "b"];
  assert.deepEqual(moveItem(list, 0, -1), ["a", "b"]);
  assert.deepEqual(moveItem(list, 1, 2), ["a", "b"]);
  assert.notEqual(moveItem(list, 0, 0), list); // always a new list, safe to store
});
