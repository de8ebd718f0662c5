"""The database table: counts, file names and label numbering."""

import numpy as np
import pytest

from contrastive_prosthetics.data.ninapro import DB1, DB2, DB3, class_names, database, describe, exercise_from_file_name


def test_spec_table_counts():
    assert (DB1.n_subjects, DB1.n_channels, DB1.sampling_rate_hz, DB1.repetitions) == (27, 10, 100.0, 10)
    assert (DB2.n_subjects, DB2.n_channels, DB2.sampling_rate_hz, DB2.repetitions) == (40, 12, 2000.0, 6)
    assert (DB3.n_subjects, DB3.n_channels, DB3.sampling_rate_hz, DB3.repetitions) == (11, 12, 2000.0, 6)
    assert DB3.amputee and not DB2.amputee and not DB1.amputee
    assert DB1.already_rectified and not DB2.already_rectified


def test_exercises_b_and_c_give_the_reference_41_classes_in_db2_numbering():
    names = class_names(["C", "B"])
    assert len(names) == 41
    assert names[0] == "rest" and names[1] == "B1" and names[17] == "B17" and names[18] == "C1" and names[40] == "C23"
    assert len(class_names(["A"])) == 13
    assert describe("C6") == "Ring grasp" and describe("rest") == "Rest"


def test_file_names_follow_each_database():
    assert DB1.file_name(3, "A") == "S3_A1_E1.mat"
    assert DB2.file_name(3, "C") == "S3_E2_A1.mat"
    assert exercise_from_file_name(DB3, 2, "S2_E1_A1.mat") == "B"
    with pytest.raises(ValueError, match=r"not a db2 file"):
        exercise_from_file_name(DB2, 2, "S3_E1_A1.mat")


def test_db1_labels_restart_at_one_and_map_to_movement_numbers():
    labels = np.array([0, 1, 1, 0, 17, 0])
    np.testing.assert_array_equal(DB1.global_labels("B", labels), labels)


def test_db2_exercise_c_labels_18_to_40_map_to_1_to_23():
    labels = np.array([0, 18, 18, 0, 40])
    np.testing.assert_array_equal(DB2.global_labels("C", labels), [0, 1, 1, 0, 23])


def test_db2_exercise_c_file_numbered_1_to_23_is_detected():
    labels = np.array([0, 1, 1, 0, 23])
    np.testing.assert_array_equal(DB2.global_labels("C", labels), [0, 1, 1, 0, 23])


def test_labels_fitting_no_numbering_are_an_error_naming_the_file():
    with pytest.raises(ValueError, match=r"S1_E2_A1.mat: field 'restimulus' holds movement labels 5-41") as error:
        DB2.global_labels("C", np.array([0, 5, 41]), "S1_E2_A1.mat")
    assert "numbered 18-40 (or 1-23 when a file restarts at 1)" in str(error.value)


def test_a_bad_label_in_exercise_b_names_one_numbering_once():
    with pytest.raises(ValueError) as error:
        DB2.global_labels("B", np.array([0, 1, 99]), "S1_E1_A1.mat")
    message = str(error.value)
    assert "labels 1-99" in message and "17 movements, numbered 1-17;" in message
    assert "1-17 nor 1-17" not in message and "data.exercises" in message


def test_known_gaps_of_db3():
    assert DB3.missing_electrodes[6] == (10, 11) and DB3.missing_electrodes[7] == (10, 11)
    assert DB3.missing_movements[1][0] == "C13" and len(DB3.missing_movements[1]) == 11  # labels 30-40


def test_unknown_database_or_subject_is_an_error():
    with pytest.raises(ValueError, match=r"unknown database 'db9'"):
        database("db9")
    with pytest.raises(ValueError, match=r"subjects 1-11"):
        DB3.check_subject(12)
    with pytest.raises(ValueError, match=r"has no exercise 'A'"):
        DB2.file_name(1, "A")
