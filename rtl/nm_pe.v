// nm_pe: one output-stationary processing element for N:M sparse weights.
//
// Each accepted input beat carries LANES N:M groups. Lane l brings M signed activations,
// N weight codes and N indices (index = position of the kept weight inside its group of
// M). The PE selects activations by index, multiplies them by the weights (INT4) or
// adds/subtracts/skips them (ternary), and sums all LANES*N products. Beat sums add up
// into a group psum; at the end of a quantization group (group_last) the psum is scaled
// and added to the accumulator; at the end of the dot product (tile_last) the
// accumulator is emitted on the output port and cleared.
//
// Pipeline (one beat per cycle, II = 1; latency L = 3 cycles from the handshake of the
// tile_last beat to out_valid):
//   S1  index mux + product + adder tree    -> s1_sum
//   S2  psum += s1_sum; at group end pass it on and clear it -> s2_psum
//   S3  acc  += s2_psum * s2_scale (mod 2^ACC_W); at tile end -> out_data, clear acc
// Back-pressure: while out_valid is high and out_ready low the whole pipeline holds
// and in_ready is low. Every register wraps modulo 2^ACC_W, so out_data is the exact
// sum of scale * (w . a) over all groups, reduced to ACC_W-bit two's complement.
//
// Bus packing, element 0 in the least significant bits:
//   in_act  [(l*M + i)*ACT_W  +: ACT_W ]  activation i of lane l (signed)
//   in_code [(l*N + j)*CODE_W +: CODE_W]  weight code j of lane l
//   in_idx  [(l*N + j)*IDX_W  +: IDX_W ]  index of weight j of lane l, in [0, M)
// with IDX_W = log2(M) and CODE_W = 4 (WMODE 0: INT4 two's complement) or
// 2 (WMODE 1: ternary, 00 -> 0, 01 -> +1, 11 -> -1, 10 unused -> 0).
//
// PACK = 2 makes one PE compute two token rows that share every weight, index and scale
// (the two PEs of a column pair in the array): row r's activations sit at
// in_act[r*LANES*M*ACT_W +: LANES*M*ACT_W] and its result at out_data[r*ACC_W +: ACC_W].
// With INT4 weights each pair of products a1*w, a0*w is one multiplication
// (a1 * 2^SUM_W + a0) * w, 26 x 4 bits, which fits one DSP48E2 (27 x 18): the shared-
// operand packing of AMD WP486 ("Deep Learning with INT8 Optimization on Xilinx
// Devices"), here with a 4-bit weight as the shared factor. The packed products are summed
// in one adder tree and split after it: row 0 is the low SUM_W bits (sign-extended), row 1
// the high field plus the low field's sign bit (the borrow a negative low field takes).
// The split is exact because each beat sum fits SUM_W bits; see docs/resources.md.
//
// The Python model models/pe_core.py (pe_dot, dot_cycles) is the bit- and
// cycle-exact reference (for PACK = 2, for each row); tests/rtl cross-check the two
// (docs/rtl.md).

module nm_pe #(
    parameter integer N       = 2,   // kept weights per group, 0 < N < M
    parameter integer M       = 4,   // group size, a power of two
    parameter integer LANES   = 4,   // N:M groups per beat
    parameter integer WMODE   = 0,   // 0: INT4 weights (multiplier), 1: ternary (no multiplier)
    parameter integer ACT_W   = 8,   // signed activation width
    parameter integer ACC_W   = 32,  // accumulator and result width
    parameter integer SCALE_W = 16,  // signed group scale width
    parameter integer PACK    = 1    // token rows sharing the weights: 1, or 2 (INT4: two products per multiplier)
) (
    input  wire                                 clk,
    input  wire                                 rst,          // synchronous, active high
    // input beats
    input  wire                                 in_valid,
    output wire                                 in_ready,
    input  wire [PACK*LANES*M*ACT_W-1:0]        in_act,       // row r at [r*LANES*M*ACT_W +: LANES*M*ACT_W]
    input  wire [LANES*N*((WMODE != 0) ? 2 : 4)-1:0]   in_code,
    input  wire [LANES*N*$clog2(M)-1:0]         in_idx,
    input  wire [SCALE_W-1:0]                   in_scale,     // used on group_last beats
    input  wire                                 in_group_last,
    input  wire                                 in_tile_last, // also ends the last group
    // results
    output reg                                  out_valid,
    input  wire                                 out_ready,
    output reg  [PACK*ACC_W-1:0]                out_data      // row r at [r*ACC_W +: ACC_W]
);
    localparam integer IDX_W  = $clog2(M);
    localparam integer CODE_W = (WMODE != 0) ? 2 : 4;
    localparam integer PRODS  = LANES * N;
    localparam integer ROW_W  = LANES * M * ACT_W;  // activation bits of one row
    // |product| fits ACT_W+4 bits (INT4) or ACT_W+1 bits (+-activation); a sum of
    // PRODS products needs $clog2(PRODS) more.
    localparam integer PROD_W = ACT_W + ((WMODE != 0) ? 1 : 4);
    localparam integer SUM_W  = PROD_W + $clog2(PRODS);
    // PACK = 2: packed operand a1 * 2^SUM_W + a0, its product with a weight, and the
    // packed beat sum, computed modulo 2^(2*SUM_W) (all that the split needs).
    localparam integer PKA_W  = ACT_W + SUM_W + 1;  // <= PKS_W because SUM_W > ACT_W
    localparam integer PKS_W  = 2 * SUM_W;

    initial begin
        if (M < 2 || (M & (M - 1)) != 0 || N < 1 || N >= M || LANES < 1) begin
            $display("nm_pe: need M a power of two, 0 < N < M, LANES >= 1");
            $finish;
        end
        if (ACC_W <= SUM_W || ACC_W < SCALE_W || ACT_W < 2 || SCALE_W < 2) begin
            $display("nm_pe: need ACC_W > beat-sum width %0d and ACC_W >= SCALE_W", SUM_W);
            $finish;
        end
        if (PACK < 1 || PACK > 2 || (PACK == 2 && WMODE != 0)) begin
            $display("nm_pe: PACK is 1, or 2 with INT4 weights (WMODE 0)");
            $finish;
        end
    end

    wire advance = !(out_valid && !out_ready);  // the pipeline moves unless the output stalls
    assign in_ready = advance;

    // ---- S1: index mux, products, adder tree (combinational), then s1_* registers ----
    reg [PACK*SUM_W-1:0] beat_sum;  // row r at [r*SUM_W +: SUM_W]

    genvar l, i, j, r;
    generate
        if (PACK == 1) begin : g_single
            wire [PROD_W-1:0] prod [0:PRODS-1];
            for (l = 0; l < LANES; l = l + 1) begin : g_lane
                wire [ACT_W-1:0] act [0:M-1];
                for (i = 0; i < M; i = i + 1) begin : g_act
                    assign act[i] = in_act[(l*M + i)*ACT_W +: ACT_W];
                end
                for (j = 0; j < N; j = j + 1) begin : g_kept
                    wire [IDX_W-1:0]  idx  = in_idx[(l*N + j)*IDX_W +: IDX_W];
                    wire [CODE_W-1:0] code = in_code[(l*N + j)*CODE_W +: CODE_W];
                    wire [ACT_W-1:0]  sel  = act[idx];  // the N:M index mux
                    // sign-extend to PROD_W (PROD_W > ACT_W always)
                    wire signed [PROD_W-1:0] sel_x =
                        {{(PROD_W-ACT_W+1){sel[ACT_W-1]}}, sel[ACT_W-2:0]};
                    if (WMODE != 0) begin : g_ternary
                        // no multiplier: add, subtract or skip the selected activation
                        assign prod[l*N + j] = (code == 2'b01) ? sel_x :
                                               (code == 2'b11) ? -sel_x : {PROD_W{1'b0}};
                    end else begin : g_int4
                        wire signed [PROD_W-1:0] w_x =
                            {{(PROD_W-CODE_W+1){code[CODE_W-1]}}, code[CODE_W-2:0]};
                        assign prod[l*N + j] = sel_x * w_x;
                    end
                end
            end
            integer p;
            always @* begin
                beat_sum = {SUM_W{1'b0}};
                for (p = 0; p < PRODS; p = p + 1)
                    beat_sum = beat_sum + {{(SUM_W-PROD_W+1){prod[p][PROD_W-1]}}, prod[p][PROD_W-2:0]};
            end
        end else begin : g_packed
            wire [PKS_W-1:0] pk_prod [0:PRODS-1];
            for (l = 0; l < LANES; l = l + 1) begin : g_lane
                wire [ACT_W-1:0] act [0:2*M-1];  // row r's activation i at r*M + i
                for (r = 0; r < 2; r = r + 1) begin : g_row
                    for (i = 0; i < M; i = i + 1) begin : g_act
                        assign act[r*M + i] = in_act[r*ROW_W + (l*M + i)*ACT_W +: ACT_W];
                    end
                end
                for (j = 0; j < N; j = j + 1) begin : g_kept
                    wire [IDX_W-1:0]  idx  = in_idx[(l*N + j)*IDX_W +: IDX_W];
                    wire [CODE_W-1:0] code = in_code[(l*N + j)*CODE_W +: CODE_W];
                    wire [ACT_W-1:0]  sel0 = act[{1'b0, idx}];  // the index mux, row 0
                    wire [ACT_W-1:0]  sel1 = act[{1'b1, idx}];  // and row 1 (same index)
                    // a1 * 2^SUM_W + a0 (exact in PKA_W bits) and the weight, both
                    // sign-extended to PKS_W: the product is taken modulo 2^PKS_W
                    wire [PKA_W-1:0] packed_act =
                        {sel1[ACT_W-1], sel1, {SUM_W{1'b0}}} +
                        {{(PKA_W-ACT_W+1){sel0[ACT_W-1]}}, sel0[ACT_W-2:0]};
                    wire signed [PKS_W-1:0] act_x =
                        {{(PKS_W-PKA_W+1){packed_act[PKA_W-1]}}, packed_act[PKA_W-2:0]};
                    wire signed [PKS_W-1:0] w_x =
                        {{(PKS_W-CODE_W+1){code[CODE_W-1]}}, code[CODE_W-2:0]};
                    assign pk_prod[l*N + j] = act_x * w_x;  // one multiplier, two products
                end
            end
            reg [PKS_W-1:0] pk_sum;
            integer p;
            always @* begin
                pk_sum = {PKS_W{1'b0}};
                for (p = 0; p < PRODS; p = p + 1)
                    pk_sum = pk_sum + pk_prod[p];
                // row 0: the low field; row 1: the high field plus the low field's borrow
                beat_sum = {pk_sum[PKS_W-1:SUM_W] + {{(SUM_W-1){1'b0}}, pk_sum[SUM_W-1]}, pk_sum[SUM_W-1:0]};
            end
        end
    endgenerate

    reg                    s1_valid, s1_group_end, s1_tile_last;
    reg [PACK*SUM_W-1:0]   s1_sum;
    reg [SCALE_W-1:0]      s1_scale;

    always @(posedge clk) begin
        if (rst) begin
            s1_valid <= 1'b0;
        end else if (advance) begin
            s1_valid     <= in_valid;
            s1_sum       <= beat_sum;
            s1_scale     <= in_scale;
            s1_group_end <= in_group_last || in_tile_last;
            s1_tile_last <= in_tile_last;
        end
    end

    // ---- S2: group psum, per row ----
    reg [PACK*ACC_W-1:0] psum;
    reg                  s2_valid, s2_tile_last;
    reg [PACK*ACC_W-1:0] s2_psum;
    reg [SCALE_W-1:0]    s2_scale;
    reg [PACK*ACC_W-1:0] psum_next;
    reg [SUM_W-1:0]      row_sum;
    integer q;
    always @* begin
        for (q = 0; q < PACK; q = q + 1) begin
            row_sum = s1_sum[q*SUM_W +: SUM_W];
            psum_next[q*ACC_W +: ACC_W] =
                psum[q*ACC_W +: ACC_W] + {{(ACC_W-SUM_W+1){row_sum[SUM_W-1]}}, row_sum[SUM_W-2:0]};
        end
    end

    always @(posedge clk) begin
        if (rst) begin
            psum     <= {(PACK*ACC_W){1'b0}};
            s2_valid <= 1'b0;
        end else if (advance) begin
            s2_valid     <= s1_valid && s1_group_end;
            s2_psum      <= psum_next;
            s2_scale     <= s1_scale;
            s2_tile_last <= s1_tile_last;
            if (s1_valid)
                psum <= s1_group_end ? {(PACK*ACC_W){1'b0}} : psum_next;
        end
    end

    // ---- S3: scaled accumulate and output register, per row ----
    reg  [PACK*ACC_W-1:0] acc;
    wire [ACC_W-1:0]      scale_x = {{(ACC_W-SCALE_W+1){s2_scale[SCALE_W-1]}}, s2_scale[SCALE_W-2:0]};
    reg  [PACK*ACC_W-1:0] acc_next;
    integer s;
    always @* begin
        for (s = 0; s < PACK; s = s + 1)  // low ACC_W bits of the product
            acc_next[s*ACC_W +: ACC_W] = acc[s*ACC_W +: ACC_W] + s2_psum[s*ACC_W +: ACC_W] * scale_x;  // synth-role: scale
    end

    always @(posedge clk) begin
        if (rst) begin
            acc       <= {(PACK*ACC_W){1'b0}};
            out_valid <= 1'b0;
        end else if (advance) begin
            out_valid <= s2_valid && s2_tile_last;
            if (s2_valid) begin
                acc <= s2_tile_last ? {(PACK*ACC_W){1'b0}} : acc_next;
                if (s2_tile_last)
                    out_data <= acc_next;
            end
        end
    end

endmodule
