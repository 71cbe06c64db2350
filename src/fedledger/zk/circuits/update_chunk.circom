pragma circom 2.1.0;

// Update proof for one chunk of at most 8,192 entries of a trainer's processed update.
//
// The trainer's secure-aggregation input is y = x + e, where x is the clipped, rotated,
// scaled and rounded update and e its discrete-Gaussian noise share (both signed integers).
// Per chunk this circuit proves, about y alone (one range check per entry; docs/zk.md, "Where
// the constraints go", argues why x and e need no checks of their own):
//   * every y_j in [-2^(BY-1), 2^(BY-1)), BY = max(BX, BE) + 1 (bit decomposition of the
//     private input u_j = y_j + 2^(BY-1), which is what the prover supplies);
//   * `commit` opens to (ctx, k, rho, y): a hiding commitment to this chunk, bound to the
//     member/round/task context `ctx` and the chunk index k (one sponge, ChunkCommit);
//   * the hidden running state (sum y^2, sum_j r^j y_j, t) moves from `stateIn` to `stateOut`;
//     both are Poseidon commitments bound to (ctx, k) and (ctx, k+1), so chunks chain only in
//     order and only within one member's proof of one round;
//   * first chunk (first = 1): the incoming sums are zero;
//   * last chunk (last = 1): sum y^2 <= bound2x + bound2e + 2 m with m^2 <= bound2x * bound2e,
//     i.e. ||y|| <= sqrt(bound2x) + sqrt(bound2e) (the noise share's bound folded into the
//     norm), and s = lin + t, the value of the random linear check (see docs/zk.md).
// Public inputs, in this order: ctx k first last commit stateIn stateOut r rOff s bound2x bound2e.

include "poseidon.circom";
include "bitify.circom";
include "comparators.circom";

// h_0 = domain; h_{i+1} = Poseidon(h_i, next 15 elements); the last block absorbs what is left,
// unpadded, in a Poseidon of its own width (fedledger.zk.poseidon.sponge). The element count is
// fixed per circuit, so the block widths are too.
template Sponge(nElems) {
    signal input domain;
    signal input in[nElems];
    signal output out;
    var nBlocks = (nElems + 14) \ 15;
    component h[nBlocks];
    for (var b = 0; b < nBlocks; b++) {
        var w = b < nBlocks - 1 ? 15 : nElems - 15 * b;
        h[b] = Poseidon(w + 1);
        if (b == 0) {
            h[b].inputs[0] <== domain;
        } else {
            h[b].inputs[0] <== h[b - 1].out;
        }
        for (var i = 0; i < w; i++) {
            h[b].inputs[i + 1] <== in[b * 15 + i];
        }
    }
    out <== h[nBlocks - 1].out;
}

// The chunk commitment: one sponge over (ctx, k, rho, packed entries) with domain TAG_COMMIT
// (fedledger.zk.update.commit_packed). Hiding through the uniform rho, bound to the context ctx
// and the chunk index k; the first block absorbs them beside the first 12 packed elements, so
// no separate hash of (TAG_COMMIT, ctx, k, rho) is needed.
template ChunkCommit(NP, TAG_COMMIT) {
    signal input ctx;
    signal input k;
    signal input rho;
    signal input packed[NP];
    signal output out;
    component sp = Sponge(NP + 3);
    sp.domain <== TAG_COMMIT;
    sp.in[0] <== ctx;
    sp.in[1] <== k;
    sp.in[2] <== rho;
    for (var q = 0; q < NP; q++) {
        sp.in[q + 3] <== packed[q];
    }
    out <== sp.out;
}

template UpdateChunk(N, BY, BS, TAG_COMMIT, TAG_STATE) {
    // public
    signal input ctx;
    signal input k;
    signal input first;
    signal input last;
    signal input commit;
    signal input stateIn;
    signal input stateOut;
    signal input r;
    signal input rOff;
    signal input s;
    signal input bound2x;
    signal input bound2e;
    // private: the entries shifted to u_j = y_j + 2^(BY-1), so every witness wire of an entry
    // is a small non-negative integer (cheap scalars in the prover's MSMs); y_j is the linear
    // combination u_j - 2^(BY-1) wherever the circuit uses it.
    signal input u[N];
    signal input rho;
    signal input syIn;
    signal input linIn;
    signal input t;
    signal input saltIn;
    signal input saltOut;
    signal input m;

    first * (1 - first) === 0;
    last * (1 - last) === 0;

    // Range: u_j in [0, 2^BY), i.e. y_j in [-2^(BY-1), 2^(BY-1)), by BY bits (the only
    // per-entry check).
    var OFF = 1 << (BY - 1);
    component ry[N];
    for (var j = 0; j < N; j++) {
        ry[j] = Num2Bits(BY);
        ry[j].in <== u[j];
    }

    // Squared norm.
    signal sq[N];
    var acc = 0;
    for (var j = 0; j < N; j++) {
        sq[j] <== (u[j] - OFF) * (u[j] - OFF);
        acc += sq[j];
    }
    signal syOut <== syIn + acc;

    // Linear form by Horner: h[j] = r * (y_j + h[j+1]), so h[0] = sum_j r^(j+1) y_j.
    signal h[N + 1];
    h[N] <== 0;
    for (var j = N - 1; j >= 0; j--) {
        h[j] <== r * (h[j + 1] + u[j] - OFF);
    }
    signal linOut <== linIn + rOff * h[0];

    // Commitment: shifted entries u packed floor(253 / BY) per field element (no overflow),
    // absorbed with (ctx, k, rho) in one sponge.
    var PY = 253 \ BY;
    var NPY = (N + PY - 1) \ PY;
    component cc = ChunkCommit(NPY, TAG_COMMIT);
    cc.ctx <== ctx;
    cc.k <== k;
    cc.rho <== rho;
    for (var q = 0; q < NPY; q++) {
        var lc = 0;
        for (var i = 0; i < PY; i++) {
            if (q * PY + i < N) {
                lc += u[q * PY + i] * (1 << (BY * i));
            }
        }
        cc.packed[q] <== lc;
    }
    commit === cc.out;

    // Chained running state.
    component hin = Poseidon(7);
    hin.inputs[0] <== TAG_STATE;
    hin.inputs[1] <== ctx;
    hin.inputs[2] <== k;
    hin.inputs[3] <== syIn;
    hin.inputs[4] <== linIn;
    hin.inputs[5] <== t;
    hin.inputs[6] <== saltIn;
    stateIn === hin.out;
    component hout = Poseidon(7);
    hout.inputs[0] <== TAG_STATE;
    hout.inputs[1] <== ctx;
    hout.inputs[2] <== k + 1;
    hout.inputs[3] <== syOut;
    hout.inputs[4] <== linOut;
    hout.inputs[5] <== t;
    hout.inputs[6] <== saltOut;
    stateOut === hout.out;

    // The first chunk starts from zero sums.
    first * syIn === 0;
    first * linIn === 0;

    // The running sum stays a small integer (so it never wraps modulo p and the comparison
    // below is sound); bounds are below 2^BS (the verifier sets them).
    component bsy = Num2Bits(BS);
    bsy.in <== syOut;
    // m <= sqrt(bound2x * bound2e): m < 2^BS and m^2 <= bound2x * bound2e (both < 2^(2 BS)).
    component bm = Num2Bits(BS);
    bm.in <== m;
    signal m2 <== m * m;
    signal bb <== bound2x * bound2e;
    component okm = LessEqThan(2 * BS);
    okm.in[0] <== m2;
    okm.in[1] <== bb;
    // sum y^2 <= bound2x + bound2e + 2 m  (both sides < 2^(BS + 2)).
    component oky = LessEqThan(BS + 2);
    oky.in[0] <== syOut;
    oky.in[1] <== bound2x + bound2e + 2 * m;
    last * (1 - okm.out) === 0;
    last * (1 - oky.out) === 0;
    last * (s - linOut - t) === 0;
}
