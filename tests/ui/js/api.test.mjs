import assert from "node:assert/strict";
import { test } from "node:test";
import { ApiError, errorText } from "../../../ui/js/api.js";

const res = (body, status = 500, statusText = "Internal Server Error") => new Response(body, { status, statusText });

test("a failed response's message is read from each error shape servers send", async () => {
  assert.equal(await errorText(res('{"error":{"message":"model not found"}}')), "model not found");
  assert.equal(await errorText(res('{"error":"bad request body"}')), "bad request body");
  assert.equal(await errorText(res('{"message":"no such route"}')), "no such route");
  assert.equal(await errorText(res('{"error":{"code":3}}')), '{"error":{"code":3}}');
  assert.equal(await errorText(res("upstream died")), "upstream died");
  assert.equal(await errorText(res("", 502, "Bad Gateway")), "Bad Gateway");
  assert.equal((await errorText(res("x".repeat(5000)))).length, 500);
});

test("an ApiError names the endpoint and the status once", () => {
  assert.equal(new ApiError("/v1/rerank", 404, "model not found").message, "/v1/rerank: 404 model not found");
  assert.equal(new ApiError("/x", 503, "503 busy").message, "/x: 503 busy");
});
