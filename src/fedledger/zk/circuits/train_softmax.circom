pragma circom 2.1.0;

// Proof of training for softmax regression (C classes), fixed point with FR fractional bits.
//
// W is C x (F + 1) (bias last), flattened row by row in w0 and in the update. Per epoch, row i:
//     z_c  = floor((sum_j W_cj x_ij + b_c 2^FR) / 2^FR)
//     m    = max_c z_c ;  d_c = m - z_c >= 0
//     a_c  = max(0, 2^(FR+3) - d_c)                          (1 + (z_c - m)/8, clipped at 0)
//     e_c  = a_c^8 / 2^(7 (FR+3)), by three squarings each floored by 2^(FR+3)
//            (exp(z_c - m) ~ (1 + (z_c - m)/8)^8)
//     p_c  = floor(e_c 2^FR / sum_k e_k)
//     err_c = active_i (p_c - [y_i = c] 2^FR)
//     g_cj = sum_i err_c x_ij ,  g_cb = sum_i err_c 2^FR
//     W_cj -= floor(lr g_cj / (nActive 2^(2 FR)))
// and `commit` is the update proof's chunk-0 commitment to x = W_E - w0.
// Public inputs, in this order: root lo[F] nActive lr w0[C*(F+1)] ctx commit.

include "dataset.circom";
include "comparators.circom";
include "update_chunk.circom";

template TrainSoftmax(R, DEPTH, F, C, FB, FR, E, WB, ZB, RB, N, BX, BE, TAG_ROW, TAG_COMMIT) {
    var D = C * (F + 1);
    var S3 = FR + 3;
    var SB = S3 + 8;  // bits of sum_k e_k (C < 2^7)
    signal input root;
    signal input lo[F];
    signal input nActive;
    signal input lr;
    signal input w0[D];
    signal input ctx;
    signal input commit;

    signal input feat[R][F];
    signal input label[R];
    signal input active[R];
    signal input rho;

    component data = DatasetRoot(R, DEPTH, F, FB, TAG_ROW);
    for (var f = 0; f < F; f++) { data.lo[f] <== lo[f]; }
    var count = 0;
    signal onehot[R][C];
    for (var r = 0; r < R; r++) {
        for (var f = 0; f < F; f++) { data.feat[r][f] <== feat[r][f]; }
        data.label[r] <== label[r];
        data.active[r] <== active[r];
        count += active[r];
        var sumBits = 0;
        var weighted = 0;
        for (var c = 0; c < C; c++) {
            onehot[r][c] <-- (label[r] == c) ? 1 : 0;
            onehot[r][c] * (1 - onehot[r][c]) === 0;
            sumBits += onehot[r][c];
            weighted += c * onehot[r][c];
        }
        sumBits === 1;
        label[r] === weighted;
    }
    root === data.root;
    nActive === count;

    signal W[E + 1][D];
    for (var j = 0; j < D; j++) { W[0][j] <== w0[j]; }

    signal prod[E][R][C][F];
    signal z[E][R][C];
    component remZ[E][R][C];
    component rangeZ[E][R][C];
    signal m[E][R];
    component gap[E][R][C];
    signal chain[E][R][C];
    component neg[E][R][C];
    signal a[E][R][C];
    signal e1[E][R][C];
    signal e2[E][R][C];
    signal e3[E][R][C];
    component r1[E][R][C];
    component r2[E][R][C];
    component r3[E][R][C];
    component b1[E][R][C];
    component b2[E][R][C];
    component b3[E][R][C];
    signal p[E][R][C];
    signal remP[E][R][C];
    component remPBits[E][R][C];
    component remPLt[E][R][C];
    component rangeP[E][R][C];
    signal err[E][R][C];
    signal gterm[E][R][C][F];
    signal delta[E][D];
    signal q[E][D];
    signal rem[E][D];
    component remQ[E][D];
    component remLt[E][D];
    component rangeQ[E][D];
    component rangeW[E][D];

    for (var t = 0; t < E; t++) {
        var grad[D];
        for (var j = 0; j < D; j++) { grad[j] = 0; }
        for (var r = 0; r < R; r++) {
            // logits, floored to FR fractional bits
            for (var c = 0; c < C; c++) {
                var acc = W[t][c * (F + 1) + F] * (1 << FR);
                for (var j = 0; j < F; j++) {
                    prod[t][r][c][j] <== W[t][c * (F + 1) + j] * feat[r][j];
                    acc += prod[t][r][c][j];
                }
                z[t][r][c] <-- (acc + (1 << (ZB + FR - 1))) \ (1 << FR) - (1 << (ZB - 1));
                remZ[t][r][c] = Num2Bits(FR);
                remZ[t][r][c].in <== acc - z[t][r][c] * (1 << FR);
                rangeZ[t][r][c] = Num2Bits(ZB);
                rangeZ[t][r][c].in <== z[t][r][c] + (1 << (ZB - 1));
            }
            // m = max_c z_c: m >= every z_c, and m equals one of them
            var mx = z[t][r][0];
            for (var c = 1; c < C; c++) { mx = z[t][r][c] > mx ? z[t][r][c] : mx; }
            m[t][r] <-- mx;
            for (var c = 0; c < C; c++) {
                gap[t][r][c] = Num2Bits(ZB);
                gap[t][r][c].in <== m[t][r] - z[t][r][c];
            }
            chain[t][r][0] <== m[t][r] - z[t][r][0];
            for (var c = 1; c < C; c++) {
                chain[t][r][c] <== chain[t][r][c - 1] * (m[t][r] - z[t][r][c]);
            }
            chain[t][r][C - 1] === 0;
            // exp(z - m) ~ (1 + (z - m)/8)^8, clipped at 0, at scale 2^(FR+3)
            for (var c = 0; c < C; c++) {
                neg[t][r][c] = GreaterThan(ZB);
                neg[t][r][c].in[0] <== m[t][r] - z[t][r][c];
                neg[t][r][c].in[1] <== 1 << S3;
                a[t][r][c] <== (1 - neg[t][r][c].out) * ((1 << S3) - m[t][r] + z[t][r][c]);
                e1[t][r][c] <-- (a[t][r][c] * a[t][r][c]) \ (1 << S3);
                r1[t][r][c] = Num2Bits(S3);
                r1[t][r][c].in <== a[t][r][c] * a[t][r][c] - e1[t][r][c] * (1 << S3);
                b1[t][r][c] = Num2Bits(S3 + 1);
                b1[t][r][c].in <== e1[t][r][c];
                e2[t][r][c] <-- (e1[t][r][c] * e1[t][r][c]) \ (1 << S3);
                r2[t][r][c] = Num2Bits(S3);
                r2[t][r][c].in <== e1[t][r][c] * e1[t][r][c] - e2[t][r][c] * (1 << S3);
                b2[t][r][c] = Num2Bits(S3 + 1);
                b2[t][r][c].in <== e2[t][r][c];
                e3[t][r][c] <-- (e2[t][r][c] * e2[t][r][c]) \ (1 << S3);
                r3[t][r][c] = Num2Bits(S3);
                r3[t][r][c].in <== e2[t][r][c] * e2[t][r][c] - e3[t][r][c] * (1 << S3);
                b3[t][r][c] = Num2Bits(S3 + 1);
                b3[t][r][c].in <== e3[t][r][c];
            }
            // p_c = floor(e_c 2^FR / S), remainder in [0, S)
            var total = 0;
            for (var c = 0; c < C; c++) { total += e3[t][r][c]; }
            for (var c = 0; c < C; c++) {
                p[t][r][c] <-- (e3[t][r][c] * (1 << FR)) \ total;
                remP[t][r][c] <== e3[t][r][c] * (1 << FR) - p[t][r][c] * total;
                remPBits[t][r][c] = Num2Bits(SB);
                remPBits[t][r][c].in <== remP[t][r][c];
                remPLt[t][r][c] = LessThan(SB);
                remPLt[t][r][c].in[0] <== remP[t][r][c];
                remPLt[t][r][c].in[1] <== total;
                remPLt[t][r][c].out === 1;
                rangeP[t][r][c] = Num2Bits(FR + 1);
                rangeP[t][r][c].in <== p[t][r][c];
                err[t][r][c] <== active[r] * (p[t][r][c] - onehot[r][c] * (1 << FR));
                for (var j = 0; j < F; j++) {
                    gterm[t][r][c][j] <== err[t][r][c] * feat[r][j];
                    grad[c * (F + 1) + j] += gterm[t][r][c][j];
                }
                grad[c * (F + 1) + F] += err[t][r][c] * (1 << FR);
            }
        }
        for (var j = 0; j < D; j++) {
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

    // The update x = W_E - w0 enters the update proof's chunk-0 commitment.
    // Packed as the update circuit packs y = x + e with e = 0: BY = max(BX, BE) + 1 bits per
    // entry, shifted by 2^(BY-1); x itself is range-checked to BX bits (BX < BY: injective).
    var BY = (BX > BE ? BX : BE) + 1;
    var PX = 253 \ BY;
    var NPX = (N + PX - 1) \ PX;
    component rangeX[D];
    for (var j = 0; j < D; j++) {
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
            if (idx < D) {
                lc += (W[E][idx] - w0[idx] + (1 << (BY - 1))) * (1 << (BY * i));
            } else if (idx < N) {
                lc += (1 << (BY - 1)) * (1 << (BY * i));
            }
        }
        cc.packed[qq] <== lc;
    }
    commit === cc.out;
}
