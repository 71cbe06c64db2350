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
@custom:security A draw maps a uniform 256-bit value to a member with probability weight/total
                 (bias below total/2**256). Pools hold at most POOL_CAP members.
"""

POOL_LOG: constant(uint256) = 16
POOL_CAP: constant(uint256) = 65535  # members per pool: indices fit POOL_LOG bits

size: public(HashMap[uint256, uint256])
member_at: public(HashMap[uint256, HashMap[uint256, address]])
index_of: public(HashMap[uint256, HashMap[address, uint256]])
total: public(HashMap[uint256, uint256])
eligible: public(HashMap[uint256, uint256])
weight_in: public(HashMap[uint256, HashMap[address, uint256]])
# bumped by every change of a pool (a member entering, a weight changing): a draw committed at
# one version is only valid at that version
version: public(HashMap[uint256, uint256])
_tree: HashMap[uint256, HashMap[uint256, uint256]]


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
    self.size[pool] = index
    self.member_at[pool][index] = member
    self.index_of[pool][member] = index
    self.version[pool] += 1
    # the new Fenwick node covers (index - lowbit(index), index]; its own weight is still 0
    low: uint256 = index & unsafe_sub(0, index)
    if low > 1:
        self._tree[pool][index] = self._prefix(pool, index - 1) - self._prefix(pool, index - low)
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
    self.weight_in[pool][member] = weight
    self.version[pool] += 1
    if weight > old:
        self._tree_add(pool, index, weight - old, True)
        self.total[pool] += weight - old
    else:
        self._tree_add(pool, index, old - weight, False)
        self.total[pool] -= old - weight
    if old == 0:
        self.eligible[pool] += 1
    elif weight == 0:
        self.eligible[pool] -= 1
    log PoolWeightChanged(pool=pool, member=member, pool_index=index, weight=weight, pool_total=self.total[pool])


@internal
def _tree_add(pool: uint256, index: uint256, delta: uint256, up: bool):
    n: uint256 = self.size[pool]
    i: uint256 = index
    for _: uint256 in range(POOL_LOG + 1):
        if i > n:
            break
        if up:
            self._tree[pool][i] += delta
        else:
            self._tree[pool][i] -= delta
        i += i & unsafe_sub(0, i)


@internal
@view
def _prefix(pool: uint256, index: uint256) -> uint256:
    """The sum of the weights of members 1..index."""
    total: uint256 = 0
    i: uint256 = index
    for _: uint256 in range(POOL_LOG + 1):
        if i == 0:
            break
        total += self._tree[pool][i]
        i -= i & unsafe_sub(0, i)
    return total


@internal
@view
def _find(pool: uint256, target: uint256) -> address:
    """The first member whose running sum of weights exceeds `target` (< total)."""
    n: uint256 = self.size[pool]
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
            w: uint256 = self._tree[pool][nxt]
            if w <= rest:
                pos = nxt
                rest -= w
        step = step >> 1
    return self.member_at[pool][pos + 1]


@internal
@view
def _draw(pool: uint256, seed: bytes32, tag: bytes32, j: uint256) -> address:
    """Draw `j` under `tag`: a member with probability weight / total."""
    t: uint256 = convert(keccak256(abi_encode(seed, tag, j)), uint256) % self.total[pool]
    return self._find(pool, t)


@internal
@view
def _next_after(pool: uint256, member: address) -> address:
    """The next member with weight after `member` in pool order (wrapping around)."""
    return self._find(pool, self._prefix(pool, self.index_of[pool][member]) % self.total[pool])
