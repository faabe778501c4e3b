// Orderings the user chooses (columns, load-test requests): merging a saved order with the ids
// that exist now, and moving one item.

/**
 * A saved order made whole: saved ids that still exist, in their saved order, then every other
 * known id in its default order. A saved order that is not a list counts as empty.
 */
export function mergeOrder(saved, ids) {
  const known = new Set(ids);
  const kept = Array.isArray(saved) ? [...new Set(saved)].filter((id) => known.has(id)) : [];
  const seen = new Set(kept);
  return [...kept, ...ids.filter((id) => !seen.has(id))];
}

/** A copy of `list` with the item at `from` moved to `to` (out-of-range moves change nothing). */
export function moveItem(list, from, to) {
  const n = list.length;
  if (from === to || from < 0 || from >= n || to < 0 || to >= n) return [...list];
  const next = [...list];
  const [item] = next.splice(from, 1);
  next.splice(to, 0, item);
  return next;
}
