pragma circom 2.1.0;

// Data-quality proof over a committed data set of at most R rows (R a power of two).
//
// Rows are fixed-point integers: F features and a label. Row r is `active` or padding. Proves:
//   * `root` is the Poseidon Merkle root of the row leaves (padding rows have leaf 0), where a
//     leaf is Poseidon(TAG_ROW, packed (f - lo), label): the member's data commitment;
//   * every feature of every row lies in the task's declared range [lo_f, hi_f];
//   * every active row's label is in the task's label set (allowed[c] = 1);
//   * at least minRows rows are active;
//   * the class histogram lies within [minCount_c, maxCount_c] for every class c.
// Public inputs, in this order: root lo[F] hi[F] allowed[C] minRows minCount[C] maxCount[C].

include "poseidon.circom";
include "bitify.circom";
include "comparators.circom";

template DataQuality(R, DEPTH, F, C, FB, TAG_ROW) {
    signal input root;
    signal input lo[F];
    signal input hi[F];
    signal input allowed[C];
    signal input minRows;
    signal input minCount[C];
    signal input maxCount[C];

    signal input feat[R][F];
    signal input label[R];
    signal input active[R];

    var PER = 253 \ FB;
    var NP = (F + PER - 1) \ PER;

    component below[R][F];
    component above[R][F];
    component leafHash[R];
    signal onehot[R][C];
    signal forbidden[R][C];
    signal leaf[R];
    var counts[C];
    var nActive = 0;
    for (var c = 0; c < C; c++) { counts[c] = 0; }

    for (var r = 0; r < R; r++) {
        active[r] * (1 - active[r]) === 0;
        nActive += active[r];
        for (var f = 0; f < F; f++) {
            below[r][f] = Num2Bits(FB);
            below[r][f].in <== feat[r][f] - lo[f];
            above[r][f] = Num2Bits(FB);
            above[r][f].in <== hi[f] - feat[r][f];
        }
        // label as a one-hot vector; all zero for padding rows
        var sumBits = 0;
        var weighted = 0;
        for (var c = 0; c < C; c++) {
            onehot[r][c] <-- (active[r] == 1 && label[r] == c) ? 1 : 0;
            onehot[r][c] * (1 - onehot[r][c]) === 0;
            forbidden[r][c] <== onehot[r][c] * (1 - allowed[c]);
            forbidden[r][c] === 0;
            sumBits += onehot[r][c];
            weighted += c * onehot[r][c];
            counts[c] += onehot[r][c];
        }
        sumBits === active[r];
        label[r] * active[r] === weighted;
        // leaf = Poseidon(TAG_ROW, packed features, label), zeroed for padding rows
        leafHash[r] = Poseidon(NP + 2);
        leafHash[r].inputs[0] <== TAG_ROW;
        for (var q = 0; q < NP; q++) {
            var lc = 0;
            for (var i = 0; i < PER; i++) {
                if (q * PER + i < F) {
                    lc += (feat[r][q * PER + i] - lo[q * PER + i]) * (1 << (FB * i));
                }
            }
            leafHash[r].inputs[1 + q] <== lc;
        }
        leafHash[r].inputs[NP + 1] <== label[r];
        leaf[r] <== active[r] * leafHash[r].out;
    }

    // Merkle tree, level by level.
    component node[R - 1];
    var idx = 0;
    signal level[2 * R - 1];
    for (var r = 0; r < R; r++) { level[r] <== leaf[r]; }
    var start = 0;
    var width = R;
    var next = R;
    for (var d = 0; d < DEPTH; d++) {
        for (var i = 0; i < width \ 2; i++) {
            node[idx] = Poseidon(2);
            node[idx].inputs[0] <== level[start + 2 * i];
            node[idx].inputs[1] <== level[start + 2 * i + 1];
            level[next + i] <== node[idx].out;
            idx++;
        }
        start = next;
        next = next + width \ 2;
        width = width \ 2;
    }
    root === level[2 * R - 2];

    // Row count and histogram bounds (counts < 2^20).
    component enough = LessEqThan(20);
    enough.in[0] <== minRows;
    enough.in[1] <== nActive;
    enough.out === 1;
    component cmin[C];
    component cmax[C];
    for (var c = 0; c < C; c++) {
        cmin[c] = LessEqThan(20);
        cmin[c].in[0] <== minCount[c];
        cmin[c].in[1] <== counts[c];
        cmin[c].out === 1;
        cmax[c] = LessEqThan(20);
        cmax[c].in[0] <== counts[c];
        cmax[c].in[1] <== maxCount[c];
        cmax[c].out === 1;
    }
}
