pragma circom 2.1.0;

// Proof of training for binary logistic regression, in fixed point with FR fractional bits.
//
// From the public global model w0 (F weights, bias last) the trainer runs E epochs of
// full-batch gradient descent on the data set committed by `root` (the data-quality
// commitment, same lo), with the public learning rate lr (fixed point):
//     zq_i   = floor((sum_j w_j x_ij + b * 2^FR) / 2^(FR+2))     (z / 4 in fixed point)
//     p_i    = clip(2^(FR-1) + zq_i, 0, 2^FR)                    (sigmoid ~ clip(1/2 + z/4, 0, 1))
//     err_i  = active_i * (p_i - y_i * 2^FR)
//     g_j    = sum_i err_i x_ij ,  g_bias = sum_i err_i * 2^FR
//     w_j   -= floor(lr * g_j / (nActive * 2^(2 FR)))
// and shows that `commit` is the update-proof commitment of chunk 0 (ctx, k = 0) to
// x = w_E - w0 (with a zero noise share: proof of training is for DP-free tasks), so the update proof and the
// linear check then bind exactly this trained update.
// Public inputs, in this order: root lo[F] nActive lr w0[F+1] ctx commit.

include "dataset.circom";
include "comparators.circom";
include "update_chunk.circom";

template TrainLogReg(R, DEPTH, F, FB, FR, E, WB, ZB, RB, N, BX, BE, TAG_ROW, TAG_COMMIT) {
    signal input root;
    signal input lo[F];
    signal input nActive;
    signal input lr;
    signal input w0[F + 1];
    signal input ctx;
    signal input commit;

    signal input feat[R][F];
    signal input label[R];
    signal input active[R];
    signal input rho;

    // The data set is the committed one.
    component data = DatasetRoot(R, DEPTH, F, FB, TAG_ROW);
    for (var f = 0; f < F; f++) { data.lo[f] <== lo[f]; }
    var count = 0;
    for (var r = 0; r < R; r++) {
        for (var f = 0; f < F; f++) { data.feat[r][f] <== feat[r][f]; }
        label[r] * (1 - label[r]) === 0;
        data.label[r] <== label[r];
        data.active[r] <== active[r];
        count += active[r];
    }
    root === data.root;
    nActive === count;

    // Weights per epoch; W[0] = w0.
    signal W[E + 1][F + 1];
    for (var j = 0; j <= F; j++) { W[0][j] <== w0[j]; }

    signal prod[E][R][F];
    signal zq[E][R];
    signal mid[E][R];
    signal err[E][R];
    signal gterm[E][R][F];
    component remZ[E][R];
    component rangeZ[E][R];
    component low[E][R];
    component high[E][R];
    signal delta[E][F + 1];
    signal q[E][F + 1];
    signal rem[E][F + 1];
    component remQ[E][F + 1];
    component remLt[E][F + 1];
    component rangeQ[E][F + 1];
    component rangeW[E][F + 1];

    for (var t = 0; t < E; t++) {
        var grad[F + 1];
        for (var j = 0; j <= F; j++) { grad[j] = 0; }
        for (var r = 0; r < R; r++) {
            var acc = W[t][F] * (1 << FR);
            for (var j = 0; j < F; j++) {
                prod[t][r][j] <== W[t][j] * feat[r][j];
                acc += prod[t][r][j];
            }
            // zq = floor(acc / 2^(FR+2)), remainder in [0, 2^(FR+2))
            zq[t][r] <-- (acc + (1 << (ZB + FR + 1))) \ (1 << (FR + 2)) - (1 << (ZB - 1));
            remZ[t][r] = Num2Bits(FR + 2);
            remZ[t][r].in <== acc - zq[t][r] * (1 << (FR + 2));
            rangeZ[t][r] = Num2Bits(ZB);
            rangeZ[t][r].in <== zq[t][r] + (1 << (ZB - 1));
            // clip(2^(FR-1) + zq, 0, 2^FR)
            low[t][r] = LessThan(ZB);
            low[t][r].in[0] <== zq[t][r] + (1 << (ZB - 1));
            low[t][r].in[1] <== (1 << (ZB - 1)) - (1 << (FR - 1));
            high[t][r] = GreaterThan(ZB);
            high[t][r].in[0] <== zq[t][r] + (1 << (ZB - 1));
            high[t][r].in[1] <== (1 << (ZB - 1)) + (1 << (FR - 1));
            mid[t][r] <== (1 - low[t][r].out - high[t][r].out) * ((1 << (FR - 1)) + zq[t][r]);
            err[t][r] <== active[r] * (mid[t][r] + high[t][r].out * (1 << FR) - label[r] * (1 << FR));
            for (var j = 0; j < F; j++) {
                gterm[t][r][j] <== err[t][r] * feat[r][j];
                grad[j] += gterm[t][r][j];
            }
            grad[F] += err[t][r] * (1 << FR);
        }
        for (var j = 0; j <= F; j++) {
            // q = floor(lr * grad / (nActive * 2^(2 FR))), remainder in [0, nActive * 2^(2 FR))
            delta[t][j] <== lr * grad[j];
            q[t][j] <-- (delta[t][j] + (1 << (WB - 1)) * nActive * (1 << (2 * FR))) \ (nActive * (1 << (2 * FR))) - (1 << (WB - 1));
            rem[t][j] <== delta[t][j] - q[t][j] * nActive * (1 << (2 * FR));
            remQ[t][j] = Num2Bits(RB);
            remQ[t][j].in <== rem[t][j];
            remLt[t][j] = LessThan(RB);
            remLt[t][j].in[0] <== rem[t][j];
            remLt[t][j].in[1] <== nActive * (1 << (2 * FR));
            remLt[t][j].out === 1;
            rangeQ[t][j] = Num2Bits(WB);
            rangeQ[t][j].in <== q[t][j] + (1 << (WB - 1));
            W[t + 1][j] <== W[t][j] - q[t][j];
            rangeW[t][j] = Num2Bits(WB);
            rangeW[t][j].in <== W[t + 1][j] + (1 << (WB - 1));
        }
    }

    // The update x = w_E - w0 enters the update proof's chunk-0 commitment.
    // Packed as the update circuit packs y = x + e with e = 0: BY = max(BX, BE) + 1 bits per
    // entry, shifted by 2^(BY-1); x itself is range-checked to BX bits (BX < BY: injective).
    var BY = (BX > BE ? BX : BE) + 1;
    var PX = 253 \ BY;
    var NPX = (N + PX - 1) \ PX;
    component rangeX[F + 1];
    for (var j = 0; j <= F; j++) {
        rangeX[j] = Num2Bits(BX);
        rangeX[j].in <== W[E][j] - w0[j] + (1 << (BX - 1));
    }
    component cc = ChunkCommit(NPX, TAG_COMMIT);
    cc.ctx <== ctx;
    cc.k <== 0;
    cc.rho <== rho;
    for (var qq = 0; qq < NPX; qq++) {
        var lc = 0;
        for (var i = 0; i < PX; i++) {
            var idx = qq * PX + i;
            if (idx < F + 1) {
                lc += (W[E][idx] - w0[idx] + (1 << (BY - 1))) * (1 << (BY * i));
            } else if (idx < N) {
                lc += (1 << (BY - 1)) * (1 << (BY * i));
            }
        }
        cc.packed[qq] <== lc;
    }
    commit === cc.out;
}
