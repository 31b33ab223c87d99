"""Medical image formats at the edges of the package: DICOM series in (:mod:`.dicom_series`), DICOM-SEG
(:mod:`.dicom_seg`, highdicom) and RTSTRUCT (:mod:`.rtstruct`) out, one record per prompt
(:mod:`.segments`), structure codes (:mod:`.anatomy_codes`), voxel grids and their checks
(:mod:`.geometry`), label-names files (:mod:`.label_names`) and the DICOM glue of the prediction
commands (:mod:`.dicom_cases`). Plain functions on plain data (arrays, grids, records); nothing here
imports the prediction, training or viewer code.
"""
