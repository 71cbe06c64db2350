pragma circom 2.1.0;

// Update proof for one chunk of at most 4,096 entries of a trainer's processed update.
//
// The trainer's secure-aggregation input is y = x + e, where x is the clipped, rotated,
// scaled and rounded update and e its discrete-Gaussian noise share (both signed integers).
// Per chunk this circuit proves:
//   * every x_j in [-2^(BX-1), 2^(BX-1)) and every e_j in [-2^(BE-1), 2^(BE-1));
//   * `commit` opens to (ctx, k, rho, x, e): a hiding commitment to this chunk, bound to the
//     member/round/task context `ctx` and the chunk index k;
//   * the hidden running state (sum x^2, sum e^2, sum_j r^j y_j, t) moves from `stateIn` to
//     `stateOut`; both are Poseidon commitments bound to (ctx, k) and (ctx, k+1), so chunks
//     chain only in order and only within one member's proof of one round;
//   * first chunk (first = 1): the incoming sums are zero;
//   * last chunk (last = 1): sum x^2 <= bound2x, sum e^2 <= bound2e, and s = lin + t, the value
//     of the random linear check (see docs/zk.md).
// Public inputs, in this order: ctx k first last commit stateIn stateOut r rOff s bound2x bound2e.

include "poseidon.circom";
include "bitify.circom";
include "comparators.circom";

// h_0 = domain; h_{i+1} = Poseidon(h_i, 15 elements), zero-padded (fedledger.zk.poseidon.sponge).
template Sponge(nElems) {
    signal input domain;
    signal input in[nElems];
    signal output out;
    var nBlocks = (nElems + 14) \ 15;
    component h[nBlocks];
    for (var b = 0; b < nBlocks; b++) {
        h[b] = Poseidon(16);
        if (b == 0) {
            h[b].inputs[0] <== domain;
        } else {
            h[b].inputs[0] <== h[b - 1].out;
        }
        for (var i = 0; i < 15; i++) {
            if (b * 15 + i < nElems) {
                h[b].inputs[i + 1] <== in[b * 15 + i];
            } else {
                h[b].inputs[i + 1] <== 0;
            }
        }
    }
    out <== h[nBlocks - 1].out;
}

template UpdateChunk(N, BX, BE, BS, TAG_COMMIT, TAG_STATE) {
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
    // private
    signal input x[N];
    signal input e[N];
    signal input rho;
    signal input sxIn;
    signal input seIn;
    signal input linIn;
    signal input t;
    signal input saltIn;
    signal input saltOut;

    first * (1 - first) === 0;
    last * (1 - last) === 0;

    // Range: entries shifted to [0, 2^B) and decomposed into B bits.
    component rx[N];
    component re[N];
    for (var j = 0; j < N; j++) {
        rx[j] = Num2Bits(BX);
        rx[j].in <== x[j] + (1 << (BX - 1));
        re[j] = Num2Bits(BE);
        re[j].in <== e[j] + (1 << (BE - 1));
    }

    // Squared norms.
    signal sqx[N];
    signal sqe[N];
    var accx = 0;
    var acce = 0;
    for (var j = 0; j < N; j++) {
        sqx[j] <== x[j] * x[j];
        sqe[j] <== e[j] * e[j];
        accx += sqx[j];
        acce += sqe[j];
    }
    signal sxOut <== sxIn + accx;
    signal seOut <== seIn + acce;

    // Linear form by Horner: h[j] = r * (y_j + h[j+1]), so h[0] = sum_j r^(j+1) y_j.
    signal h[N + 1];
    h[N] <== 0;
    for (var j = N - 1; j >= 0; j--) {
        h[j] <== r * (h[j + 1] + x[j] + e[j]);
    }
    signal linOut <== linIn + rOff * h[0];

    // Commitment: shifted entries packed floor(253 / B) per field element (no overflow).
    var PX = 253 \ BX;
    var PE = 253 \ BE;
    var NPX = (N + PX - 1) \ PX;
    var NPE = (N + PE - 1) \ PE;
    component sp = Sponge(NPX + NPE);
    for (var q = 0; q < NPX; q++) {
        var lc = 0;
        for (var i = 0; i < PX; i++) {
            if (q * PX + i < N) {
                lc += (x[q * PX + i] + (1 << (BX - 1))) * (1 << (BX * i));
            }
        }
        sp.in[q] <== lc;
    }
    for (var q = 0; q < NPE; q++) {
        var lc = 0;
        for (var i = 0; i < PE; i++) {
            if (q * PE + i < N) {
                lc += (e[q * PE + i] + (1 << (BE - 1))) * (1 << (BE * i));
            }
        }
        sp.in[NPX + q] <== lc;
    }
    component head = Poseidon(4);
    head.inputs[0] <== TAG_COMMIT;
    head.inputs[1] <== ctx;
    head.inputs[2] <== k;
    head.inputs[3] <== rho;
    sp.domain <== head.out;
    commit === sp.out;

    // Chained running state.
    component hin = Poseidon(8);
    hin.inputs[0] <== TAG_STATE;
    hin.inputs[1] <== ctx;
    hin.inputs[2] <== k;
    hin.inputs[3] <== sxIn;
    hin.inputs[4] <== seIn;
    hin.inputs[5] <== linIn;
    hin.inputs[6] <== t;
    hin.inputs[7] <== saltIn;
    stateIn === hin.out;
    component hout = Poseidon(8);
    hout.inputs[0] <== TAG_STATE;
    hout.inputs[1] <== ctx;
    hout.inputs[2] <== k + 1;
    hout.inputs[3] <== sxOut;
    hout.inputs[4] <== seOut;
    hout.inputs[5] <== linOut;
    hout.inputs[6] <== t;
    hout.inputs[7] <== saltOut;
    stateOut === hout.out;

    // The first chunk starts from zero sums.
    first * sxIn === 0;
    first * seIn === 0;
    first * linIn === 0;

    // Running sums stay small integers (also makes the comparisons below sound).
    component bsx = Num2Bits(BS);
    bsx.in <== sxOut;
    component bse = Num2Bits(BS);
    bse.in <== seOut;
    component okx = LessEqThan(BS);
    okx.in[0] <== sxOut;
    okx.in[1] <== bound2x;
    component oke = LessEqThan(BS);
    oke.in[0] <== seOut;
    oke.in[1] <== bound2e;
    last * (1 - okx.out) === 0;
    last * (1 - oke.out) === 0;
    last * (s - linOut - t) === 0;
}
