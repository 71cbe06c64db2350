# pragma version ~=0.4.3
"""
@title pools
@notice Stake-weighted selection pools. A pool is identified by a number (the task manager uses
        task_id * 4 + role, so every task has its own trainer, aggregator and validator pool,
        holding only the members who joined that task). Members sit in a pool in the order they
        entered it; their weights sit in a Fenwick tree (P. M. Fenwick, "A new data structure for
        cumulative frequency tables", Software: Practice and Experience 24(3), 1994), so a
        weight change, a prefix sum and a weighted draw each cost O(log n) storage accesses,
        never O(n).
        Policy-free: the consumer decides who enters a pool and what a weight is.
        A pool can be frozen (`_freeze`): until it is thawed (`_thaw`, once the draw is done),
        draws (`_draw`, `_next_after`, `_frozen_weight`, `_frozen_eligible`) read the pool as it
        stood at the freeze, whatever changed since; a change takes effect for draws from the
        next freeze on. The snapshot is kept copy-on-write: while frozen, the first change of
        the pool's size, total and count, of a tree node or of a member's weight saves the old
        value tagged with the freeze's number, so a freeze is O(1), a change stays O(log n), and
        a draw from a pool nothing changed in since its freeze reads the live tree only. A pool
        not frozen draws as it is, and its changes save nothing.
@custom:security A draw maps a uniform 256-bit value to a member with probability weight/total
                 (bias below total/2**256). Pools hold at most POOL_CAP members. Weights and
                 totals stay below 2**192 (the saved values share a slot with their tag).
"""

POOL_LOG: constant(uint256) = 16
POOL_CAP: constant(uint256) = 65535  # members per pool: indices fit POOL_LOG bits

size: public(HashMap[uint256, uint256])
member_at: public(HashMap[uint256, HashMap[uint256, address]])
index_of: public(HashMap[uint256, HashMap[address, uint256]])
total: public(HashMap[uint256, uint256])
eligible: public(HashMap[uint256, uint256])
weight_in: public(HashMap[uint256, HashMap[address, uint256]])
_tree: HashMap[uint256, HashMap[uint256, uint256]]

TAG_SHIFT: constant(uint256) = 192
VALUE_MASK: constant(uint256) = 2**192 - 1


struct Head:
    frozen: uint256  # the freeze these values are of
    size: uint256
    total: uint256
    eligible: uint256


# the number of the pool's last freeze: odd while frozen, even once thawed (0: never frozen)
frozen: public(HashMap[uint256, uint256])
# the pool's size, total and count at its last freeze, once something changed after it
_head: HashMap[uint256, Head]
# tree nodes and members' weights at the last freeze: freeze number << 192 | value, saved by the
# first change after it (an older number: unchanged since, the live value is the frozen one)
_old_node: HashMap[uint256, HashMap[uint256, uint256]]
_old_weight: HashMap[uint256, HashMap[address, uint256]]


event PoolEntered:
    pool: indexed(uint256)
    member: indexed(address)
    pool_index: uint256

event PoolWeightChanged:
    pool: indexed(uint256)
    member: indexed(address)
    pool_index: uint256
    weight: uint256
    pool_total: uint256


@internal
def _enter(pool: uint256, member: address) -> uint256:
    """Append `member` to `pool` with weight 0 (once; later calls return its index)."""
    index: uint256 = self.index_of[pool][member]
    if index != 0:
        return index
    index = self.size[pool] + 1
    assert index <= POOL_CAP, "pools: pool is full"
    self._save_head(pool)  # only the size changes for a frozen view: the new node lies past it
    self.size[pool] = index
    self.member_at[pool][index] = member
    self.index_of[pool][member] = index
    # the new Fenwick node covers (index - lowbit(index), index]; its own weight is still 0
    low: uint256 = index & unsafe_sub(0, index)
    if low > 1:
        self._tree[pool][index] = self._prefix(pool, index - 1, False) - self._prefix(pool, index - low, False)
    log PoolEntered(pool=pool, member=member, pool_index=index)
    return index


@internal
def _set_weight(pool: uint256, member: address, weight: uint256):
    """Set the weight of a member already in `pool`."""
    index: uint256 = self.index_of[pool][member]
    assert index != 0, "pools: not in the pool"
    old: uint256 = self.weight_in[pool][member]
    if weight == old:
        return
    f: uint256 = self.frozen[pool]
    if f % 2 == 1:
        self._save_head(pool)
        if self._old_weight[pool][member] >> TAG_SHIFT != f:
            self._old_weight[pool][member] = (f << TAG_SHIFT) | old
    self.weight_in[pool][member] = weight
    if weight > old:
        self._tree_add(pool, index, weight - old, True)
        self.total[pool] += weight - old
    else:
        self._tree_add(pool, index, old - weight, False)
        self.total[pool] -= old - weight
    assert self.total[pool] <= VALUE_MASK, "pools: total weight too large"
    if old == 0:
        self.eligible[pool] += 1
    elif weight == 0:
        self.eligible[pool] -= 1
    log PoolWeightChanged(pool=pool, member=member, pool_index=index, weight=weight, pool_total=self.total[pool])


@internal
def _tree_add(pool: uint256, index: uint256, delta: uint256, up: bool):
    n: uint256 = self.size[pool]
    f: uint256 = self.frozen[pool]
    i: uint256 = index
    for _: uint256 in range(POOL_LOG + 1):
        if i > n:
            break
        if f % 2 == 1 and self._old_node[pool][i] >> TAG_SHIFT != f:
            self._old_node[pool][i] = (f << TAG_SHIFT) | self._tree[pool][i]
        if up:
            self._tree[pool][i] += delta
        else:
            self._tree[pool][i] -= delta
        i += i & unsafe_sub(0, i)


@internal
@view
def _prefix(pool: uint256, index: uint256, at_freeze: bool) -> uint256:
    """The sum of the weights of members 1..index (now, or at the pool's freeze if something changed
    since: `at_freeze`)."""
    total: uint256 = 0
    i: uint256 = index
    for _: uint256 in range(POOL_LOG + 1):
        if i == 0:
            break
        if at_freeze:
            total += self._node_at_freeze(pool, i)
        else:
            total += self._tree[pool][i]
        i -= i & unsafe_sub(0, i)
    return total


@internal
def _freeze(pool: uint256):
    """Fix the pool's state for draws: they read it as it is now until it is thawed (a new odd
    number: tags saved under an earlier freeze never match it)."""
    f: uint256 = self.frozen[pool]
    self.frozen[pool] = f + 1 + f % 2


@internal
def _thaw(pool: uint256):
    """The draw is done: changes take effect at once again and save nothing."""
    f: uint256 = self.frozen[pool]
    if f % 2 == 1:
        self.frozen[pool] = f + 1


@internal
def _save_head(pool: uint256):
    f: uint256 = self.frozen[pool]
    if f % 2 == 1 and self._head[pool].frozen != f:
        self._head[pool] = Head(frozen=f, size=self.size[pool], total=self.total[pool], eligible=self.eligible[pool])


@internal
@view
def _changed(pool: uint256) -> bool:
    """Whether the frozen pool changed since its freeze (every change saves the head first)."""
    f: uint256 = self.frozen[pool]
    return f % 2 == 1 and self._head[pool].frozen == f


@internal
@view
def _frozen_head(pool: uint256, changed: bool) -> Head:
    """The pool's size, total and count at its freeze (as they are, if nothing changed since)."""
    if changed:
        return self._head[pool]
    return Head(frozen=self.frozen[pool], size=self.size[pool], total=self.total[pool], eligible=self.eligible[pool])


@internal
@view
def _node_at_freeze(pool: uint256, i: uint256) -> uint256:
    old: uint256 = self._old_node[pool][i]
    if old >> TAG_SHIFT == self.frozen[pool]:
        return old & VALUE_MASK
    return self._tree[pool][i]


@internal
@view
def _frozen_weight(pool: uint256, member: address) -> uint256:
    """`member`'s weight at the pool's freeze."""
    f: uint256 = self.frozen[pool]
    old: uint256 = self._old_weight[pool][member]
    if f % 2 == 1 and old >> TAG_SHIFT == f:
        return old & VALUE_MASK
    return self.weight_in[pool][member]


@internal
@view
def _frozen_eligible(pool: uint256) -> uint256:
    """How many members had weight at the pool's freeze."""
    return self._frozen_head(pool, self._changed(pool)).eligible


@internal
@view
def _find(pool: uint256, n: uint256, target: uint256, changed: bool) -> address:
    """The first member whose running sum of weights at the freeze exceeds `target` (< the total
    then); `n` is the pool's size then, `changed` whether anything changed since."""
    step: uint256 = 1
    for _: uint256 in range(POOL_LOG):
        if step * 2 > n:
            break
        step *= 2
    pos: uint256 = 0
    rest: uint256 = target
    for _: uint256 in range(POOL_LOG + 1):
        if step == 0:
            break
        nxt: uint256 = pos + step
        if nxt <= n:
            w: uint256 = 0
            if changed:
                w = self._node_at_freeze(pool, nxt)
            else:
                w = self._tree[pool][nxt]
            if w <= rest:
                pos = nxt
                rest -= w
        step = step >> 1
    return self.member_at[pool][pos + 1]


@internal
@view
def _draw(pool: uint256, seed: bytes32, tag: bytes32, j: uint256) -> address:
    """Draw `j` under `tag`: a member with probability weight / total, at the freeze."""
    changed: bool = self._changed(pool)
    h: Head = self._frozen_head(pool, changed)
    t: uint256 = convert(keccak256(abi_encode(seed, tag, j)), uint256) % h.total
    return self._find(pool, h.size, t, changed)


@internal
@view
def _next_after(pool: uint256, member: address) -> address:
    """The next member with weight at the freeze after `member` in pool order (wrapping around)."""
    changed: bool = self._changed(pool)
    h: Head = self._frozen_head(pool, changed)
    return self._find(pool, h.size, self._prefix(pool, self.index_of[pool][member], changed) % h.total, changed)
