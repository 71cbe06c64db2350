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

include "dataset.circom";
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

    // commitment, and every feature >= lo
    component data = DatasetRoot(R, DEPTH, F, FB, TAG_ROW);
    for (var f = 0; f < F; f++) { data.lo[f] <== lo[f]; }
    for (var r = 0; r < R; r++) {
        for (var f = 0; f < F; f++) { data.feat[r][f] <== feat[r][f]; }
        data.label[r] <== label[r];
        data.active[r] <== active[r];
    }
    root === data.root;

    component above[R][F];
    signal onehot[R][C];
    signal forbidden[R][C];
    var counts[C];
    var nActive = 0;
    for (var c = 0; c < C; c++) { counts[c] = 0; }
    for (var r = 0; r < R; r++) {
        nActive += active[r];
        for (var f = 0; f < F; f++) {
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
    }

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
