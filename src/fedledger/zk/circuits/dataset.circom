pragma circom 2.1.0;

// The data commitment shared by the data-quality and training circuits: a Poseidon Merkle root
// over row leaves Poseidon(TAG_ROW, pack(feat - lo), label), padding rows (active = 0) have
// leaf 0. Also proves every feature in [lo_f, lo_f + 2^FB), which makes the packing injective.

include "poseidon.circom";
include "bitify.circom";

// Leaf of one row, and every feature in [lo_f, lo_f + 2^FB).
template RowLeaf(F, FB, TAG_ROW) {
    signal input lo[F];
    signal input feat[F];
    signal input label;
    signal output out;

    var PER = 253 \ FB;
    var NP = (F + PER - 1) \ PER;
    component below[F];
    for (var f = 0; f < F; f++) {
        below[f] = Num2Bits(FB);
        below[f].in <== feat[f] - lo[f];
    }
    component h = Poseidon(NP + 2);
    h.inputs[0] <== TAG_ROW;
    for (var q = 0; q < NP; q++) {
        var lc = 0;
        for (var i = 0; i < PER; i++) {
            if (q * PER + i < F) {
                lc += (feat[q * PER + i] - lo[q * PER + i]) * (1 << (FB * i));
            }
        }
        h.inputs[1 + q] <== lc;
    }
    h.inputs[NP + 1] <== label;
    out <== h.out;
}

template DatasetRoot(R, DEPTH, F, FB, TAG_ROW) {
    signal input lo[F];
    signal input feat[R][F];
    signal input label[R];
    signal input active[R];
    signal output root;

    component leaf[R];
    signal level[2 * R - 1];
    for (var r = 0; r < R; r++) {
        active[r] * (1 - active[r]) === 0;
        leaf[r] = RowLeaf(F, FB, TAG_ROW);
        for (var f = 0; f < F; f++) {
            leaf[r].lo[f] <== lo[f];
            leaf[r].feat[f] <== feat[r][f];
        }
        leaf[r].label <== label[r];
        level[r] <== active[r] * leaf[r].out;
    }
    component node[R - 1];
    var idx = 0;
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
    root <== level[2 * R - 2];
}
