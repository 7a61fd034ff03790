"""Unsupervised hierarchy induction: caption trees and image region hierarchies from
link affinities, their scores against gold structure, and pictures (DESIGN.md §2)."""

from hiclip.induce.draw import draw_groups, draw_tree, groups_gif, overlay
from hiclip.induce.groups import RegionTree, group_labels, region_tree
from hiclip.induce.scores import (
    best_iou,
    block_labels,
    bracket_f1,
    bracket_report,
    group_report,
    layer_scores,
    left_branching_spans,
    masks_to_grid,
    nltk_spans,
    nontrivial,
    random_spans,
    read_trees,
    right_branching_spans,
    span_f1,
)
from hiclip.induce.trees import Tree, caption_pieces, induce_tree, induce_trees, word_links, word_spans

__all__ = [
    "RegionTree", "Tree", "best_iou", "block_labels", "bracket_f1", "bracket_report", "caption_pieces",
    "draw_groups", "draw_tree", "group_labels", "group_report", "groups_gif", "induce_tree", "induce_trees",
    "layer_scores", "left_branching_spans", "masks_to_grid", "nltk_spans", "nontrivial", "overlay",
    "random_spans", "read_trees", "region_tree", "right_branching_spans", "span_f1", "word_links", "word_spans",
]
