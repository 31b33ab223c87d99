"""Networks: STUNet, the text-prompted head, the confounder bottleneck and the plans-driven builder."""
