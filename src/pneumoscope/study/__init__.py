"""The study of the paper: Table 1 per encoder, stage 2, Table 2 and the HTML report."""
