pragma circom 2.1.0;

// Spot check of a committed data set too large to prove whole: K rows at public indices (drawn
// from a public seed by the verifier) are opened against the Poseidon Merkle root (depth DEPTH)
// and checked: features within [lo, hi], label in the task's label set, index below nRows.
// Public inputs, in this order: root lo[F] hi[F] allowed[C] nRows idx[K].

include "dataset.circom";
include "comparators.circom";

template SpotCheck(K, DEPTH, F, C, FB, TAG_ROW) {
    signal input root;
    signal input lo[F];
    signal input hi[F];
    signal input allowed[C];
    signal input nRows;
    signal input idx[K];

    signal input feat[K][F];
    signal input label[K];
    signal input siblings[K][DEPTH];

    component leaf[K];
    component above[K][F];
    component bits[K];
    component inRange[K];
    component node[K][DEPTH];
    signal cur[K][DEPTH + 1];
    signal left[K][DEPTH];
    signal right[K][DEPTH];
    signal onehot[K][C];
    signal forbidden[K][C];
    for (var k = 0; k < K; k++) {
        leaf[k] = RowLeaf(F, FB, TAG_ROW);
        for (var f = 0; f < F; f++) {
            leaf[k].lo[f] <== lo[f];
            leaf[k].feat[f] <== feat[k][f];
            above[k][f] = Num2Bits(FB);
            above[k][f].in <== hi[f] - feat[k][f];
        }
        leaf[k].label <== label[k];
        // label in the set: one-hot over C classes, forbidden classes excluded
        var sumBits = 0;
        var weighted = 0;
        for (var c = 0; c < C; c++) {
            onehot[k][c] <-- (label[k] == c) ? 1 : 0;
            onehot[k][c] * (1 - onehot[k][c]) === 0;
            forbidden[k][c] <== onehot[k][c] * (1 - allowed[c]);
            forbidden[k][c] === 0;
            sumBits += onehot[k][c];
            weighted += c * onehot[k][c];
        }
        sumBits === 1;
        label[k] === weighted;
        // the index is a real row, and its bits steer the Merkle path
        inRange[k] = LessThan(DEPTH + 1);
        inRange[k].in[0] <== idx[k];
        inRange[k].in[1] <== nRows;
        inRange[k].out === 1;
        bits[k] = Num2Bits(DEPTH);
        bits[k].in <== idx[k];
        cur[k][0] <== leaf[k].out;
        for (var d = 0; d < DEPTH; d++) {
            left[k][d] <== cur[k][d] + bits[k].out[d] * (siblings[k][d] - cur[k][d]);
            right[k][d] <== siblings[k][d] + bits[k].out[d] * (cur[k][d] - siblings[k][d]);
            node[k][d] = Poseidon(2);
            node[k][d].inputs[0] <== left[k][d];
            node[k][d].inputs[1] <== right[k][d];
            cur[k][d + 1] <== node[k][d].out;
        }
        root === cur[k][DEPTH];
    }
}
